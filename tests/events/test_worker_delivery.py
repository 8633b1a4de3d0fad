"""Acceptance: a real Celery worker delivers events over real HTTP to a receiver that fails 30 %
of requests, rate-limits with Retry-After and is restarted mid-run; every event still arrives,
and the de-duplicating receiver accepts each webhook-id exactly once."""

from __future__ import annotations

import logging
import time

import pytest
from django.db import transaction
from pytest_django.fixtures import Settings

from accounts.models import Team
from bipsync_partner.events import delivery, outbox
from bipsync_partner.events.models import Delivery, Event
from tests.events.conftest import Receiver, add_endpoint
from tests.sync.conftest import Worker

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

log = logging.getLogger(__name__)
EVENTS = 60


def pending() -> int:
    return Delivery.objects.filter(status=Delivery.Status.PENDING).count()


def test_every_event_arrives_once_through_failures_rate_limits_and_a_receiver_restart(
    events_worker: Worker, events_settings: Settings, receiver: Receiver, team: Team
) -> None:
    add_endpoint(team, receiver)
    receiver.behaviour.fail_ratio = 0.3
    receiver.behaviour.rate_limit_every = 9
    started = time.monotonic()
    with transaction.atomic():
        for n in range(EVENTS):
            outbox.record(team.pk, "write.delivered", {"write": {"id": f"w-{n}"}})

    restarted = False
    deadline = time.monotonic() + 120
    next_sweep = time.monotonic() + 2
    while pending():
        assert time.monotonic() < deadline, events_worker.log_tail()
        if not restarted and len(receiver.accepted) >= EVENTS // 3:
            receiver.restart(pause=1.0)
            restarted = True
        if time.monotonic() >= next_sweep:
            delivery.sweep()  # as beat does
            next_sweep = time.monotonic() + 2
        time.sleep(0.1)
    log.warning(
        "%d events through %d requests in %.1f s",
        EVENTS,
        len(receiver.seen),
        time.monotonic() - started,
    )

    uids = set(Event.objects.values_list("uid", flat=True))
    assert len(uids) == EVENTS
    assert Delivery.objects.filter(status=Delivery.Status.DELIVERED).count() == EVENTS
    assert restarted
    # Each event accepted once, under its own id (the same on every retry).
    assert set(receiver.accepted) == uids
    assert set(receiver.accepted.values()) == {1}
    assert {seen.webhook_id for seen in receiver.seen} == uids
    assert receiver.unverified == 0
    # The faults did strike, and retries were needed.
    statuses = [seen.status for seen in receiver.seen]
    assert statuses.count(500) > 5
    assert statuses.count(429) > 2
    assert len(receiver.seen) > EVENTS * 1.3
    # A repeat is only an answer lost in the restart (a request in flight when it went down).
    assert sum(receiver.repeats.values()) <= events_worker.concurrency
