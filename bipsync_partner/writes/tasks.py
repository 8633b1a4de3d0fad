"""Celery tasks of the writes: each takes ids, calls one function, and is safe to run twice.

- ``writes.deliver(team_id)``: a run of the team's deliverer (queue ``writes``): its due writes,
  one after another, each claimed as it is reached. Two runs at once take different writes; a
  run that finds nothing due does nothing.
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
def deliver_writes_task(team_id: int) -> str:
    result = delivery.deliver_due(team_id)
    return f"{result.attempted} writes attempted" + (" (more queued)" if result.more else "")


@shared_task(name="writes.sweep", ignore_result=True, soft_time_limit=50, time_limit=55)
def sweep_writes_task() -> str:
    result = queueing.sweep()
    return f"{result.queued} teams queued ({result.expired_leases} writes after a lapsed lease)"
