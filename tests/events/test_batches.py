"""A burst of events costs a few messages and a few statements per batch, not per event, and a
worker that lost its claim still records nothing."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Team
from bipsync_partner.events import claims, delivery, outbox
from bipsync_partner.events.models import Delivery, Endpoint
from tests.events.conftest import Receiver, add_endpoint

pytestmark = pytest.mark.django_db(transaction=True)


def burst(team: Team, count: int) -> None:
    with transaction.atomic():
        for n in range(count):
            outbox.record(team.pk, "write.delivered", {"write": {"id": f"w-{n}"}})


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The runs queued, still queued for real (a spy, not a stand-in)."""
    calls: list[str] = []
    real = outbox.publish

    def spy(endpoint_id: Any, countdown: float = 0.0, *, call_in: bool = True) -> None:
        calls.append(str(endpoint_id) if call_in else f"{endpoint_id} (called in)")
        real(endpoint_id, countdown, call_in=call_in)

    monkeypatch.setattr(outbox, "publish", spy)
    return calls


def test_a_burst_queues_one_run_and_marks_each_batch_delivered_in_one_statement(
    events_settings: Settings, receiver: Receiver, team: Team, published: list[str]
) -> None:
    events_settings.EVENTS_DELIVERY_BATCH = 10
    endpoint = add_endpoint(team, receiver)
    outbox.started(endpoint.pk)  # no run of an earlier test waits
    burst(team, 25)
    assert published == [str(endpoint.pk)]  # 25 events, one run queued

    with CaptureQueriesContext(connection) as queries:
        assert delivery.deliver_due(endpoint.pk) == "25 deliveries attempted"

    assert Delivery.objects.filter(status=Delivery.Status.DELIVERED).count() == 25
    assert sorted(receiver.accepted.values()) == [1] * 25
    marks = [q["sql"] for q in queries.captured_queries if "delivered_at = v.at" in q["sql"]]
    assert len(marks) == 3  # batches of 10, 10 and 5
    assert len(queries.captured_queries) <= 3 * 8 + 4
    # More were due than one batch: the first claim called in runs for other workers to join
    # at once (one per batch left, up to EVENTS_DELIVERY_RUNS in all).
    assert published == [str(endpoint.pk)] + [f"{endpoint.pk} (called in)"] * 2
    assert delivery.deliver_due(endpoint.pk) == "0 deliveries attempted"


def test_a_run_grows_its_batches_to_a_fast_endpoints_pace(
    events_settings: Settings, receiver: Receiver, team: Team
) -> None:
    events_settings.EVENTS_DELIVERY_BATCH = 100
    endpoint = add_endpoint(team, receiver)
    burst(team, 250)

    with CaptureQueriesContext(connection) as queries:
        assert delivery.deliver_due(endpoint.pk) == "250 deliveries attempted"

    marks = [q["sql"] for q in queries.captured_queries if "delivered_at = v.at" in q["sql"]]
    # A first batch of 25 shows the endpoint answers within milliseconds: then the most.
    assert len(marks) == 4  # 25, 100, 100, 25
    assert sorted(receiver.accepted.values()) == [1] * 250


@pytest.mark.parametrize(
    ("seconds", "attempted", "size"),
    [
        (0.1, 25, 100),  # 4 ms each: 2 s would hold 500, the most is 100
        (5.0, 25, 10),  # 200 ms each: 10 fill 2 s
        (30.0, 5, 1),  # 6 s each: one at a time, so that other workers share the burst
        (0.0, 25, 100),
    ],
)
def test_a_batch_holds_about_two_seconds_of_the_endpoints_pace(
    events_settings: Settings, seconds: float, attempted: int, size: int
) -> None:
    events_settings.EVENTS_DELIVERY_BATCH = 100
    events_settings.EVENTS_DELIVERY_BATCH_MS = 2000
    assert delivery._next_batch_size(seconds, attempted) == size


def claim(endpoint: Endpoint, size: int, smallest_share: int = 1) -> claims.Claimed:
    return claims.claim(
        endpoint.pk,
        uuid.uuid4(),
        size,
        timezone.now(),
        look_ahead=400,
        smallest_share=smallest_share,
    )


def test_a_run_sharing_a_burst_claims_its_fair_share_of_what_is_left(
    events_settings: Settings, receiver: Receiver, team: Team
) -> None:
    endpoint = add_endpoint(team, receiver)
    burst(team, 60)

    alone = claim(endpoint, 20)
    second = claim(endpoint, 100)
    third = claim(endpoint, 100)

    def seen(claimed: claims.Claimed) -> tuple[int, bool, int, int]:
        return (len(claimed.batch), claimed.more, claimed.free_besides, claimed.other_runs)

    # Alone: the batch asked for, 40 left free.
    assert seen(alone) == (20, True, 40, 0)
    # Another run holds 20: half of the 40 free, so that both end together.
    assert seen(second) == (20, True, 20, 1)
    # Two others: a third of the 20 free.
    assert seen(third) == (7, True, 13, 2)


def test_a_share_of_a_bursts_end_is_never_smaller_than_the_smallest_share(
    events_settings: Settings, receiver: Receiver, team: Team
) -> None:
    endpoint = add_endpoint(team, receiver)
    burst(team, 30)
    claim(endpoint, 2)

    # Half of the 28 free would be 14.
    assert len(claim(endpoint, 100, smallest_share=20).batch) == 20


def test_a_worker_that_lost_its_claim_marks_nothing_delivered(
    events_settings: Settings, receiver: Receiver, team: Team
) -> None:
    endpoint = add_endpoint(team, receiver)
    burst(team, 3)
    token = uuid.uuid4()
    batch, more, *_ = claims.claim(endpoint.pk, token, 10, timezone.now())
    assert (len(batch), more) == (3, False)
    # Its lease ran out and another worker took the second one over.
    Delivery.objects.filter(pk=batch[1].id).update(claim_token=uuid.uuid4())

    outcomes = delivery._attempt(batch, token, started=time.monotonic())

    assert outcomes == {
        batch[0].id: "delivered",
        batch[1].id: "claim lost",
        batch[2].id: "delivered",
    }
    taken = Delivery.objects.get(pk=batch[1].id)
    assert (taken.status, taken.attempts, taken.delivered_at) == ("pending", 0, None)
    done = Delivery.objects.get(pk=batch[0].id)
    assert (done.status, done.attempts, done.last_status_code) == ("delivered", 1, 204)
    assert done.first_attempt_at == done.last_attempt_at == done.delivered_at
