"""Celery tasks of proactive token refresh: each takes ids, calls one function, and is safe to
run twice (the version check and the token service's row lock make a second run a no-op).

- ``connections.sweep_refreshes()``: beat's minute-ly sweep; queues one refresh per due
  connection, in batches per tenant.
- ``connections.refresh_batch(tenant, items)``: refresh a batch of ``[connection_id, version]``
  of one tenant (queue ``refresh``, so that a long sync never delays it).

Task functions carry a ``_task`` suffix (their Celery names do not), so that a call site never
mistakes queuing for the work itself (``sweep.refresh_batch``).
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from bipsync_partner.connections import sweep
from bipsync_partner.ops import metrics

log = logging.getLogger(__name__)

#: Waits for a tenant slot or a Retry-After before the task gives up; the marker is then
#: released and the next sweep queues the connection again.
MAX_WAITS = 20


@shared_task(
    name="connections.refresh_batch",
    ignore_result=True,
    acks_late=True,
    soft_time_limit=settings.REFRESH_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.REFRESH_TASK_TIME_LIMIT,
)
def refresh_batch_task(tenant: str, items: list[list[object]], waits: int = 0) -> str:
    pairs = [(str(connection_id), int(str(version))) for connection_id, version in items]
    try:
        result = sweep.refresh_batch(tenant, pairs)
    except BaseException:
        # The next sweep queues whatever this batch did not finish.
        sweep.queued_markers().release(sweep.marker_name(*pair) for pair in pairs)
        raise
    sweep.queued_markers().release(sweep.marker_name(*pair) for pair in result.done)
    for outcome, count in result.outcomes.items():
        metrics.inc("bipsync_token_refreshes", count, outcome=outcome)
    if result.remaining:
        if result.waited and waits >= MAX_WAITS:
            # Waited long enough: let a later sweep queue them afresh.
            sweep.queued_markers().release(sweep.marker_name(*p) for p in result.remaining)
        else:
            # Still queued: the markers stay, so a sweep does not queue them a second time.
            publish_batch(tenant, result.remaining, result.retry_in, waits=waits + 1)
    summary = ", ".join(f"{count} {outcome}" for outcome, count in result.outcomes.items())
    log.info("Proactive refresh of %d connections: %s", len(result.done), summary or "none")
    return summary


@shared_task(
    name="connections.sweep_refreshes", ignore_result=True, soft_time_limit=50, time_limit=55
)
def sweep_refreshes_task() -> str:
    result = sweep.sweep(publish_batch)
    return f"{result.due} due, {result.queued} queued, {result.already_queued} already queued"


def publish_batch(
    tenant: str, items: list[sweep.Item], countdown: float, *, waits: int = 0
) -> None:
    # countdown=0.0 would still make an ETA task (held in the worker's timer, and prefetched
    # without limit by Redis consumers); only a real delay is passed.
    args = (tenant, [list(item) for item in items], waits)
    if countdown > 0:
        refresh_batch_task.apply_async(args, countdown=countdown)
    else:
        refresh_batch_task.apply_async(args)
