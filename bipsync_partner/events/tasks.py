"""Celery tasks of the events: each takes ids, calls one function, and is safe to run twice.

- ``events.deliver_endpoint(endpoint_id, call_in=True)`` (queue ``events``): a run of the
  endpoint's deliverer, attempting its due deliveries in batches (``call_in`` False: a run
  called in to share a burst, which calls in no others). A second run finds them delivered, not
  yet due, or claimed by the first, and does nothing.
- ``events.deliver(delivery_id)`` (queue ``events``): one delivery (with a batch of its
  endpoint's); no longer queued, kept for the messages queued before runs per endpoint.
- ``events.sweep()`` (queue ``events``, beat): endpoints with due deliveries whose run was lost.
"""

from __future__ import annotations

from celery import shared_task

from bipsync_partner.events import delivery


@shared_task(
    name="events.deliver_endpoint",
    ignore_result=True,
    acks_late=True,
    soft_time_limit=50,
    time_limit=55,
)
def deliver_endpoint_task(endpoint_id: str, call_in: bool = True) -> str:
    return delivery.deliver_due(endpoint_id, call_in=call_in)


@shared_task(
    name="events.deliver", ignore_result=True, acks_late=True, soft_time_limit=50, time_limit=55
)
def deliver_event_task(delivery_id: int) -> str:
    return delivery.deliver(delivery_id)


@shared_task(name="events.sweep", ignore_result=True, soft_time_limit=50, time_limit=55)
def sweep_events_task() -> str:
    return f"{delivery.sweep()} endpoints queued"
