"""Celery tasks of the events: each takes ids, calls one function, and is safe to run twice.

- ``events.deliver(delivery_id)`` (queue ``events``): one attempt of one delivery. A second run
  finds it delivered, not yet due, or claimed by the first, and does nothing.
- ``events.sweep()`` (queue ``events``, beat): due deliveries whose message was lost.
"""

from __future__ import annotations

from celery import shared_task

from bipsync_partner.events import delivery


@shared_task(
    name="events.deliver", ignore_result=True, acks_late=True, soft_time_limit=50, time_limit=55
)
def deliver_event_task(delivery_id: int) -> str:
    return delivery.deliver(delivery_id)


@shared_task(name="events.sweep", ignore_result=True, soft_time_limit=50, time_limit=55)
def sweep_events_task() -> str:
    return f"{delivery.sweep()} deliveries queued"
