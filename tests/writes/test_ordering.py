"""Writes of one external id are delivered in the order their transactions committed: a write
whose transaction took its id first but committed later must not be overtaken."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from pytest_django.fixtures import Settings

from accounts.models import Team
from bipsync_partner.writes import api, delivery
from bipsync_partner.writes.models import Write
from tests.support.sandbox import Sandbox
from tests.sync.conftest import SyncWorld
from tests.writes.conftest import service_account

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_write_queued_while_an_earlier_transaction_is_open_waits_and_is_delivered_after_it(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    service_account(team, world)
    author = world.world.admin.id
    first_queued = threading.Event()
    let_first_commit = threading.Event()
    second_done = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with transaction.atomic():
                api.create_note(team, external_id="race", title="older", author=author)
                first_queued.set()
                let_first_commit.wait(10)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            connection.close()

    def second() -> None:
        try:
            with transaction.atomic():
                api.create_note(team, external_id="race", title="newer", author=author)
            second_done.set()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    older = threading.Thread(target=first)
    older.start()
    assert first_queued.wait(10)
    newer = threading.Thread(target=second)
    newer.start()
    # The second transaction waits for the first to end before its write takes an id.
    assert not second_done.wait(1.0)
    let_first_commit.set()
    older.join(10)
    newer.join(10)
    assert not errors, errors

    writes = list(Write.objects.filter(team=team).order_by("id").values_list("pk", "payload"))
    assert [payload["title"] for _, payload in writes] == ["older", "newer"]
    assert delivery.deliver(writes[1][0]) == "waiting for an earlier write"
    assert delivery.deliver(writes[0][0]) == "delivered"
    assert delivery.deliver(writes[1][0]) == "delivered"
    [note] = sandbox.notes_by_external_id(world.tenant, "bipsync-partner", "race")
    assert note["title"] == "newer"
