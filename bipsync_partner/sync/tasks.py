"""Celery tasks of the sync: each takes ids, calls one function, and is safe to run twice.

- ``sync.run_sync(run_id)``: work on one run (queue ``sync``). A second delivery of the same
  message finds the run finished, or its connection's lock taken, and does nothing.
- ``sync.forget_connection(connection_id)``: after a disconnect, remove the connection's
  sightings and the documents only it saw (queue ``default``); does nothing for a connection
  that is no longer disconnected, or a second time.
- ``sync.sweep_due_syncs()``: beat's minute-ly sweep (queue ``default``): runs for due schedules,
  and runs that lost their worker continue from their checkpoint.
- ``sync.sweep_new_research()`` and ``sync.poll_new_research(connection_id)``: the short poll
  for new research between full scans (:mod:`.fresh`); a poll stores only what it does not
  know yet, so a second delivery finds nothing new.
- ``sync.refresh_statistics()``: after a run that changed many rows (queue ``default``): fresh
  planner statistics when they are stale (:mod:`.engine.statistics`); a second run finds them
  fresh and does nothing.
- ``sync.refetch_documents(connection_id, document_ids)``: a webhook's hint (:mod:`.hints`);
  it asks Bipsync again each time, so running twice stores the same answer once.

Task functions carry a ``_task`` suffix (their Celery names do not).
"""

from __future__ import annotations

import logging
import time

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import OperationalError

from bipsync_partner.ops.context import bound
from bipsync_partner.sync import engine, fresh, hints, scheduling
from bipsync_partner.sync.api import ApiError
from bipsync_partner.sync.client import api_for
from bipsync_partner.sync.engine import statistics
from bipsync_partner.sync.exposure import forget_connection
from bipsync_partner.sync.models import SyncRun

log = logging.getLogger(__name__)

#: Stop starting new pages this long before the soft time limit, so a slice ends on a page
#: boundary instead of being interrupted mid-page.
SLICE_MARGIN_SECONDS = 30


@shared_task(
    name="sync.run_sync",
    ignore_result=True,
    acks_late=True,
    soft_time_limit=settings.SYNC_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.SYNC_TASK_TIME_LIMIT,
)
def run_sync_task(run_id: int) -> str:
    connection_id = (
        SyncRun.objects.filter(pk=run_id).values_list("connection_id", flat=True).first()
    )
    if connection_id is None:
        return "gone"
    with bound(connection=connection_id):
        budget = settings.SYNC_TASK_SOFT_TIME_LIMIT
        deadline = time.monotonic() + max(budget / 2, budget - SLICE_MARGIN_SECONDS)
        try:
            outcome = engine.execute(
                run_id,
                api_factory=api_for,
                deadline=deadline,
                on_locked=lambda: scheduling.release_marker(run_id),
            )
        except SoftTimeLimitExceeded:
            # The checkpoint is at the last committed page; the next slice continues there.
            outcome = engine.Outcome(engine.CONTINUE, "soft time limit")
        except Exception as exc:
            outcome = engine.record_crash(run_id, exc)
        if outcome.action in (engine.CONTINUE, engine.RETRY):
            scheduling.enqueue(run_id, outcome.countdown)
        log.info("Sync task for run %s: %s (%s)", run_id, outcome.action, outcome.reason)
        return outcome.reason


@shared_task(name="sync.sweep_due_syncs", ignore_result=True, soft_time_limit=50, time_limit=55)
def sweep_due_syncs_task() -> str:
    result = scheduling.sweep_due()
    return (
        f"{result.schedules_created} schedules created, {result.runs_created} runs queued, "
        f"{result.resumed} resumed"
    )


@shared_task(
    name="sync.forget_connection",
    ignore_result=True,
    acks_late=True,
    # A deadlock with a page locking the same documents (PostgreSQL aborts one of the two,
    # and nothing of this run is left): again, shortly.
    autoretry_for=(OperationalError,),
    retry_backoff=5,
    max_retries=5,
    soft_time_limit=300,
    time_limit=330,
)
def forget_connection_task(connection_id: str) -> int:
    with bound(connection=connection_id):
        return forget_connection(connection_id)


@shared_task(name="sync.sweep_new_research", ignore_result=True, soft_time_limit=25, time_limit=28)
def sweep_new_research_task() -> str:
    return f"{fresh.sweep()} polls queued"


@shared_task(
    name="sync.poll_new_research",
    ignore_result=True,
    soft_time_limit=60,
    time_limit=75,
)
def poll_new_research_task(connection_id: str) -> str:
    with bound(connection=connection_id):
        try:
            polled = fresh.poll(connection_id)
        except ApiError as error:
            # The next poll, or the full scan, catches up; nothing is lost.
            log.info("New-research poll failed: %s", error.sentence)
            return error.code
        return polled.skipped or f"{polled.created} new in {polled.requests} requests"


@shared_task(
    name="sync.refetch_documents",
    bind=True,
    ignore_result=True,
    acks_late=True,
    max_retries=3,
    soft_time_limit=60,
    time_limit=75,
)
def refetch_documents_task(self: Task, connection_id: str, document_ids: list[str]) -> str:  # type: ignore[type-arg]
    with bound(connection=connection_id):
        try:
            result = hints.refetch(connection_id, document_ids)
        except ApiError as error:
            if error.transient and self.request.retries < (self.max_retries or 0):
                raise self.retry(countdown=error.retry_after or 30.0) from None
            # Given up: the next full scan sees the documents anyway.
            log.info("Webhook hint dropped: %s", error.sentence)
            return error.code
        return result.skipped or f"{result.stored} stored, {result.unseen} no longer seen"


@shared_task(name="sync.refresh_statistics", ignore_result=True)
def refresh_statistics_task() -> str:
    analysed = statistics.refresh_if_stale()
    return f"analysed {', '.join(analysed)}" if analysed else "statistics fresh"
