"""Celery tasks of proactive token refresh: each takes ids, calls one function, and is safe to
run twice (the version check and the token service's row lock make a second run a no-op).

- ``connections.sweep_refreshes()``: beat's minute-ly sweep; queues one refresh per due connection.
- ``connections.refresh_connection(connection_id, version)``: refresh one connection (queue
  ``refresh``, so that a long sync never delays it).
"""

from __future__ import annotations

import logging

from celery import shared_task
from celery.app.task import Task
from django.conf import settings

from bipsync_partner.connections import sweep
from bipsync_partner.ops import metrics
from bipsync_partner.ops.context import bound

log = logging.getLogger(__name__)

#: Waits for a tenant slot or a Retry-After before the task gives up; the marker is then
#: released and the next sweep queues the connection again.
MAX_WAITS = 20


@shared_task(
    name="connections.refresh_connection",
    bind=True,
    ignore_result=True,
    acks_late=True,
    max_retries=MAX_WAITS,
    soft_time_limit=settings.REFRESH_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.REFRESH_TASK_TIME_LIMIT,
)
def refresh_connection(self: Task[[str, int], str], connection_id: str, version: int) -> str:
    with bound(connection=connection_id):
        marker = sweep.marker_name(connection_id, version)
        try:
            result = sweep.refresh_due(connection_id, version)
        except BaseException:
            sweep.queued_markers().release([marker])
            raise
        if result.retry_in is not None and self.request.retries < MAX_WAITS:
            # Still queued: the marker stays, so a sweep does not queue it a second time.
            raise self.retry(countdown=result.retry_in)
        sweep.queued_markers().release([marker])
        metrics.inc("bipsync_token_refreshes", outcome=result.outcome)
        log.info("Proactive refresh: %s", result.outcome)
        return result.outcome


@shared_task(
    name="connections.sweep_refreshes", ignore_result=True, soft_time_limit=50, time_limit=55
)
def sweep_refreshes() -> str:
    result = sweep.sweep(publish_refresh)
    return f"{result.due} due, {result.queued} queued, {result.already_queued} already queued"


def publish_refresh(connection_id: object, version: int, countdown: float) -> None:
    # countdown=0.0 would still make an ETA task (held in the worker's timer, and prefetched
    # without limit by Redis consumers); only a real delay is passed.
    if countdown > 0:
        refresh_connection.apply_async((str(connection_id), version), countdown=countdown)
    else:
        refresh_connection.apply_async((str(connection_id), version))
