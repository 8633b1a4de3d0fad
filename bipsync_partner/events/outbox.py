"""Writing events: one Event row and one Delivery per enabled endpoint subscribed to its type,
in the caller's transaction, with each delivery queued once that transaction commits."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from bipsync_partner.events.models import Delivery, Endpoint, Event


def record(team_id: int, type: str, data: dict[str, Any]) -> Event | None:
    """Add the event to the outbox if any endpoint of the team wants it (None otherwise: an
    event nobody receives is not kept)."""
    endpoints = list(
        Endpoint.objects.filter(team_id=team_id, enabled=True, event_types__contains=[type])
        .order_by()
        .values_list("id", flat=True)
    )
    if not endpoints:
        return None
    now = timezone.now()
    payload = {"type": type, "timestamp": now.isoformat(), "data": data}
    event = Event.objects.create(team_id=team_id, type=type, payload=payload, created=now)
    deliveries = Delivery.objects.bulk_create(
        Delivery(event=event, endpoint_id=endpoint, next_attempt_at=now) for endpoint in endpoints
    )
    for delivery in deliveries:
        enqueue(delivery.pk)
    return event


def enqueue(delivery_id: int, *, countdown: float = 0.0) -> None:
    """Queue the delivery after the commit (at once outside a transaction). A lost message
    costs a sweep interval: the sweep queues every due delivery."""
    from bipsync_partner.events.tasks import deliver_event_task

    def send() -> None:
        if countdown > 0:
            deliver_event_task.apply_async((delivery_id,), countdown=countdown)
        else:
            deliver_event_task.apply_async((delivery_id,))

    transaction.on_commit(send)
