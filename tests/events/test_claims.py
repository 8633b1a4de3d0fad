"""A claim (events/claims.py) gives the deliverer plain values rather than model instances: they
must be what is stored, in the order the batch was chosen in, with the endpoint as it is now."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Team
from bipsync_partner.events import claims, outbox
from bipsync_partner.events.models import Delivery, Endpoint
from tests.events.conftest import Receiver, add_endpoint

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_claimed_delivery_carries_what_is_stored_of_it_and_its_event(
    events_settings: Settings, receiver: Receiver, team: Team
) -> None:
    endpoint = add_endpoint(team, receiver, ["write.delivered"])
    event = outbox.record(team.pk, "write.delivered", {"write": {"id": "w-1", "n": [1, "é"]}})
    assert event is not None
    token = uuid.uuid4()

    [claimed], more, *_ = claims.claim(endpoint.pk, token, 10, timezone.now())

    assert more is False
    stored = Delivery.objects.select_related("event").get(pk=claimed.id)
    assert (claimed.attempts, claimed.first_attempt_at) == (0, None)
    assert (claimed.uid, claimed.type) == (event.uid, "write.delivered")
    # The body is the stored payload, as PostgreSQL prints it: sent and signed as it is.
    assert json.loads(claimed.body) == stored.event.payload
    assert json.loads(claimed.body)["data"] == {"write": {"id": "w-1", "n": [1, "é"]}}
    assert claimed.endpoint.pk == endpoint.pk
    assert claimed.endpoint.signing_secrets(timezone.now()) == [endpoint.secret]
    assert (stored.claim_token, stored.lease_until is not None) == (token, True)


def test_a_batch_comes_in_the_order_it_was_chosen_in(
    events_settings: Settings, receiver: Receiver, team: Team
) -> None:
    endpoint = add_endpoint(team, receiver)
    for n in range(4):
        outbox.record(team.pk, "write.delivered", {"write": {"id": f"w-{n}"}})
    ids = list(Delivery.objects.order_by("id").values_list("id", flat=True))
    # The newest was due first; the task was queued for the third.
    now = timezone.now()
    for age, pk in enumerate(reversed(ids)):
        Delivery.objects.filter(pk=pk).update(next_attempt_at=now - timedelta(minutes=age))

    batch = claims.claim(endpoint.pk, uuid.uuid4(), 10, now, first=ids[2]).batch

    assert [row.id for row in batch] == [ids[2], ids[0], ids[1], ids[3]]


def claim_again(endpoint_id: uuid.UUID, previous: claims.Claimed) -> claims.Claimed:
    """A run's next claim: one, knowing the endpoint as the previous claim loaded it."""
    return claims.claim(
        endpoint_id,
        uuid.uuid4(),
        1,
        timezone.now(),
        known=previous.endpoint,
        known_version=previous.endpoint_version,
    )


def first_of_two(team: Team, receiver: Receiver) -> tuple[Endpoint, claims.Claimed]:
    endpoint = add_endpoint(team, receiver)
    for n in range(2):
        outbox.record(team.pk, "write.delivered", {"write": {"id": f"w-{n}"}})
    return endpoint, claims.claim(endpoint.pk, uuid.uuid4(), 1, timezone.now())


def test_a_run_reads_its_endpoint_once_while_the_endpoint_is_unchanged(
    events_settings: Settings, receiver: Receiver, team: Team
) -> None:
    endpoint, first = first_of_two(team, receiver)

    with CaptureQueriesContext(connection) as queries:
        second = claim_again(endpoint.pk, first)

    assert len(queries.captured_queries) == 1  # the claim itself
    assert second.batch[0].endpoint is first.endpoint


def test_an_endpoint_changed_since_the_last_claim_is_loaded_again(
    events_settings: Settings, receiver: Receiver, team: Team
) -> None:
    endpoint, first = first_of_two(team, receiver)
    # An admin rotates the secret while the run sends its first batch.
    new = endpoint.rotate_secret(timezone.now())

    second = claim_again(endpoint.pk, first)

    assert second.batch[0].endpoint is not first.endpoint
    assert second.batch[0].endpoint.signing_secrets(timezone.now())[0] == new
    assert second.endpoint_version != first.endpoint_version


def test_a_disabled_endpoint_has_nothing_claimed(
    events_settings: Settings, receiver: Receiver, team: Team
) -> None:
    endpoint = add_endpoint(team, receiver)
    outbox.record(team.pk, "write.delivered", {"write": {"id": "w-1"}})
    endpoint.enabled = False
    endpoint.save(update_fields=["enabled"])

    claimed = claims.claim(endpoint.pk, uuid.uuid4(), 10, timezone.now())

    assert (claimed.batch, claimed.endpoint) == ([], None)
    assert Delivery.objects.get().claim_token is None
