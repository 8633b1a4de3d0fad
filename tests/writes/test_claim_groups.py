"""Claiming due writes a group at a time: one durable commit for several writes, never two of
one ordering key together, and a write whose lease is half gone given back unsent."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Team
from bipsync_partner.writes import api, delivery
from bipsync_partner.writes.claims import claim_group, due_candidates
from bipsync_partner.writes.models import Write
from tests.support.sandbox import Sandbox
from tests.sync.conftest import SyncWorld
from tests.writes.conftest import service_account

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_group_claims_several_writes_but_never_two_of_one_ordering_key(
    partner: Settings, world: SyncWorld, team: Team
) -> None:
    service_account(team, world)
    author = world.world.admin.id
    for n in range(4):
        api.create_note(team, external_id=f"group-{n}", title=f"Note {n}", author=author)
    api.create_note(team, external_id="group-0", title="Note 0, edited", author=author)

    candidates = due_candidates(team.pk, 50)
    group = claim_group(candidates)

    assert len(group) == 4  # the edit of group-0 waits for the note before it
    assert len({held.write.ordering_key for held in group}) == 4
    sending = Write.objects.filter(team=team, status=Write.Status.SENDING)
    assert sorted(sending.values_list("external_value", flat=True)) == [
        f"group-{n}" for n in range(4)
    ]
    assert all(held.has_time_left() for held in group)


def test_a_claimed_write_whose_lease_is_half_gone_is_given_back_unsent(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    service_account(team, world)
    author = world.world.admin.id
    api.create_note(team, external_id="late", title="Late", author=author)
    [held] = claim_group(due_candidates(team.pk, 50))
    # As if the writes ahead of it in its group had taken most of the lease.
    soon = timezone.now() + timedelta(seconds=partner.WRITES_LEASE_SECONDS / 2 - 5)
    Write.objects.filter(pk=held.write.pk).update(lease_until=soon)
    held.write.lease_until = soon

    assert not held.has_time_left()
    assert held.release()

    write = Write.objects.get(pk=held.write.pk)
    assert (write.status, write.attempts, write.uncertain, write.claim_token) == (
        Write.Status.QUEUED,
        0,
        False,
        None,
    )
    assert sandbox.notes_by_external_id(world.tenant, "bipsync-partner", "late") == []
    # Given back, it is delivered by the next run as any queued write.
    assert delivery.deliver_due(team.pk).attempted == 1
    assert Write.objects.get(pk=write.pk).status == Write.Status.DELIVERED


def test_a_run_delivers_more_writes_than_a_group_in_turn(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    partner.WRITES_CLAIM_GROUP = 3
    service_account(team, world)
    author = world.world.admin.id
    for n in range(8):
        api.create_note(team, external_id=f"turn-{n}", title=f"Note {n}", author=author)

    result = delivery.deliver_due(team.pk)

    assert (result.attempted, result.more) == (8, False)
    assert Write.objects.filter(team=team, status=Write.Status.DELIVERED).count() == 8
    for n in range(8):
        assert len(sandbox.notes_by_external_id(world.tenant, "bipsync-partner", f"turn-{n}")) == 1
