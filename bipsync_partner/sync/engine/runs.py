"""The run's bookkeeping: how it ends (succeeded, failed), waits (retry, pause) or crashes, with
its schedule, metrics and log lines."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from bipsync_partner.connections.models import Connection
from bipsync_partner.ops import metrics
from bipsync_partner.sync.api import ApiError
from bipsync_partner.sync.engine import statistics
from bipsync_partner.sync.engine.deletions import decide_deletions
from bipsync_partner.sync.engine.outcomes import CONTINUE, DONE, RETRY, Outcome
from bipsync_partner.sync.models import (
    ScanPage,
    SyncRun,
    SyncSchedule,
)
from bipsync_partner.sync.signals import sync_completed

log = logging.getLogger(__name__)


def _durable_commit() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = on")


def finish(run: SyncRun) -> bool:
    """The scan reached the end of the list: conclude the run, or start its confirming scan
    (False: the caller reads the list again from the run's reset checkpoint)."""
    now = timezone.now()
    with transaction.atomic():
        _durable_commit()
        deleted = decide_deletions(run, now)
        if deleted is None:
            return False
        run.deleted_count = deleted
        run.status = SyncRun.Status.SUCCEEDED
        run.finished_at = now
        run.heartbeat_at = now
        run.error_code = ""
        run.error_message = ""
        run.save()
        ScanPage.objects.filter(run=run).delete()
        schedule = _schedule_of(run.connection)
        SyncSchedule.objects.filter(pk=schedule.pk).update(
            last_success_at=now, next_due_at=now + schedule.interval
        )
        sync_completed.send(sender=SyncRun, run=run)
        changes = run.created_count + run.deleted_count
        if changes >= statistics.ANALYZE_AFTER_CHANGES or (
            run.first_scan and run.seen_count >= statistics.ANALYZE_AFTER_CHANGES
        ):
            # (A connection's first scan of a synced tenant writes its sightings only.) Fresh
            # statistics for the browser and the next run's plans, as a task: ANALYZE reads the
            # whole table, every team's research, so it stays off the run (see .statistics).
            transaction.on_commit(_queue_statistics_refresh)
    metrics.inc("bipsync_sync_runs", outcome="succeeded")
    for outcome, count in (
        ("created", run.created_count),
        ("updated", run.updated_count),
        ("unchanged", run.unchanged_count),
        ("deleted", run.deleted_count),
    ):
        if count:
            metrics.inc("bipsync_sync_documents", count, outcome=outcome)
    log.info(
        "Sync run %s succeeded: %d seen, %d created, %d updated, %d unchanged, %d deleted",
        run.pk,
        run.seen_count,
        run.created_count,
        run.updated_count,
        run.unchanged_count,
        run.deleted_count,
    )
    return True


def _queue_statistics_refresh() -> None:
    from bipsync_partner.sync.tasks import refresh_statistics_task

    statistics.flush_counts()
    refresh_statistics_task.delay()


def fail(run: SyncRun, code: str, sentence: str) -> None:
    now = timezone.now()
    with transaction.atomic():
        _durable_commit()
        run.status = SyncRun.Status.FAILED
        run.finished_at = now
        run.error_code = code[:64]
        run.error_message = sentence
        run.save()
        ScanPage.objects.filter(run=run).delete()
        schedule = _schedule_of(run.connection)
        # Try again at the next period, not at once: a failing tenant is not hammered.
        SyncSchedule.objects.filter(pk=schedule.pk).update(next_due_at=now + schedule.interval)
    metrics.inc("bipsync_sync_runs", outcome="failed")
    log.warning("Sync run %s failed (%s): %s", run.pk, code, sentence)


def _schedule_of(conn: Connection) -> SyncSchedule:
    schedule, _ = SyncSchedule.objects.get_or_create(connection=conn)
    return schedule


def retry_later(run: SyncRun, error: ApiError) -> Outcome:
    run.attempts += 1
    if run.attempts >= settings.SYNC_MAX_ATTEMPTS:
        run.save(update_fields=["attempts"])
        fail(run, error.code, f"{error.sentence} (gave up after {run.attempts} attempts)")
        return Outcome(DONE, "failed")
    countdown = error.retry_after or min(600.0, 15.0 * 2 ** (run.attempts - 1))
    run.status = SyncRun.Status.QUEUED
    run.error_code = error.code[:64]
    run.error_message = f"Waiting {countdown:.0f} s to continue: {error.sentence}"
    run.save(update_fields=["attempts", "status", "error_code", "error_message"])
    log.info("Sync run %s will continue in %.0f s: %s", run.pk, countdown, error.sentence)
    return Outcome(RETRY, error.code, countdown)


def pause(run: SyncRun, reason: str) -> Outcome:
    run.status = SyncRun.Status.QUEUED
    run.save(update_fields=["status"])
    log.info("Sync run %s paused at offset %d: %s", run.pk, run.next_offset, reason)
    return Outcome(CONTINUE, reason)


def record_crash(run_id: int, exc: BaseException) -> Outcome:
    """An unexpected error (a bug, the database away) ended a slice: count it as an attempt so
    that a run failing the same way every time ends as failed instead of looping for ever."""
    log.exception("Sync run %s crashed", run_id, exc_info=exc)
    try:
        run = SyncRun.objects.select_related("connection").get(pk=run_id)
    except Exception:
        log.exception("Could not record the crash of sync run %s", run_id)
        return Outcome(RETRY, "crashed", 60.0)
    if run.is_finished:
        return Outcome(DONE, "crashed after finishing")
    error = ApiError(
        f"The sync stopped on an unexpected error ({type(exc).__name__}).",
        code="internal_error",
        transient=True,
    )
    return retry_later(run, error)
