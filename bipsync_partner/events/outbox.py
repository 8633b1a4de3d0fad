"""Writing events: one Event row and one Delivery per enabled endpoint subscribed to its type,
in the caller's transaction, with a run of each endpoint's deliverer queued once it commits.

What is queued is a run of the endpoint's deliverer (:func:`delivery.deliver_due`), only a
nudge: the rows say what to do. A run queued while another waits for a worker would find nothing
the waiting one does not, so at most one waits per endpoint (a Redis marker, set when it is
queued and cleared when it starts; it expires by itself should the run be lost). A burst of
events therefore costs a handful of messages, not one per event. Queueing one too many costs a
claim that finds nothing; losing one costs at most a sweep interval (the sweep queues a run for
every endpoint with a due delivery).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bipsync_partner.commit_hooks import on_commit_once
from bipsync_partner.coordination import OnceKeys
from bipsync_partner.events.models import Delivery, Endpoint, Event


def record(
    team_id: int, type: str, data: dict[str, Any] | Callable[[], dict[str, Any]]
) -> Event | None:
    """Add the event to the outbox if any endpoint of the team wants it (None otherwise: an
    event nobody receives is not kept). ``data`` may be a function, called only then: what a
    receiver reads to describe the change is not read for an event nobody wants."""
    events = record_each(team_id, type, lambda: [data() if callable(data) else data])
    return events[0] if events else None


def record_each(team_id: int, type: str, data: Callable[[], list[dict[str, Any]]]) -> list[Event]:
    """One event of ``type`` per item ``data`` returns (called only when an endpoint of the team
    wants the type), with one look-up of the endpoints and one insert of each kind of row for
    all of them: a group of writes recorded together costs the same few statements as one."""
    endpoints = list(
        Endpoint.objects.filter(team_id=team_id, enabled=True, event_types__contains=[type])
        .order_by()
        .values_list("id", flat=True)
    )
    if not endpoints:
        return []
    now = timezone.now()
    events = Event.objects.bulk_create(
        Event(
            team_id=team_id,
            type=type,
            payload={"type": type, "timestamp": now.isoformat(), "data": item},
            created=now,
        )
        for item in data()
    )
    Delivery.objects.bulk_create(
        Delivery(event=event, endpoint_id=endpoint, next_attempt_at=now)
        for event in events
        for endpoint in endpoints
    )
    for endpoint in endpoints:
        enqueue(endpoint)
    return events


def _waiting() -> OnceKeys:
    # Longer than a sweep interval would delay a lost run's replacement beyond it.
    return OnceKeys("events-run", ttl_seconds=settings.EVENTS_SWEEP_INTERVAL_SECONDS)


def enqueue(endpoint_id: uuid.UUID | str, *, countdown: float = 0.0, joining: int = 0) -> None:
    """Queue a run of the endpoint's deliverer once the current transaction commits (at once
    outside one); or ``joining`` runs that join a burst's first run and call in no others. A run
    for later (a retry's back-off) is always queued; runs for now only when no other waits."""

    def send() -> None:
        if countdown > 0 or _waiting().claim(_waiting().name(endpoint_id)):
            if joining:
                for _ in range(joining):
                    publish(endpoint_id, call_in=False)
            else:
                publish(endpoint_id, countdown)

    if countdown > 0:
        transaction.on_commit(send)
    else:
        # The transaction's other events for it share this nudge (one Redis round trip).
        on_commit_once(("events-run", str(endpoint_id)), send)


def publish(endpoint_id: uuid.UUID | str, countdown: float = 0.0, *, call_in: bool = True) -> None:
    from bipsync_partner.events.tasks import deliver_endpoint_task  # the task calls this module

    args = (str(endpoint_id),) if call_in else (str(endpoint_id), False)
    if countdown > 0:
        deliver_endpoint_task.apply_async(args, countdown=countdown)
    else:
        deliver_endpoint_task.apply_async(args)


def started(endpoint_id: uuid.UUID | str) -> None:
    """A run of the endpoint's deliverer started: the next event recorded must queue another."""
    _waiting().release([_waiting().name(endpoint_id)])
