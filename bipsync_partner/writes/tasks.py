"""Celery tasks of the writes: each takes ids, calls one function, and is safe to run twice.

- ``writes.deliver(write_id)``: deliver one write (queue ``writes``). A second run finds the write
  final, or claimed by the first, and does nothing.
- ``writes.sweep()``: beat's sweep (queue ``writes``): due retries, and writes whose queueing was
  lost or whose worker died.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from bipsync_partner.writes import delivery, queueing


@shared_task(
    name="writes.deliver",
    ignore_result=True,
    acks_late=True,
    soft_time_limit=settings.WRITES_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.WRITES_TASK_TIME_LIMIT,
)
def deliver_write_task(write_id: int) -> str:
    return delivery.deliver(write_id)


@shared_task(name="writes.sweep", ignore_result=True, soft_time_limit=50, time_limit=55)
def sweep_writes_task() -> str:
    result = queueing.sweep()
    return f"{result.queued} writes queued ({result.expired_leases} after a lapsed lease)"
