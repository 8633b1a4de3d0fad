"""A slice of a run: take the lock and a tenant slot, then read and store pages until the run
ends, must wait, or the slice's time is up."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.utils import timezone

from bipsync_partner.connections.models import Connection
from bipsync_partner.coordination import TenantSemaphore
from bipsync_partner.ops.interpreter import switch_interval
from bipsync_partner.sync.api import ApiError, BipsyncApi
from bipsync_partner.sync.engine import statistics
from bipsync_partner.sync.engine.lock import run_lock
from bipsync_partner.sync.engine.metadata import sync_metadata
from bipsync_partner.sync.engine.outcomes import DONE, RETRY, Outcome, SliceOver
from bipsync_partner.sync.engine.pages import store_page
from bipsync_partner.sync.engine.paging import Step, scan
from bipsync_partner.sync.engine.prefetch import PREFETCH_SWITCH_INTERVAL, Prefetch
from bipsync_partner.sync.engine.resources import sync_resources
from bipsync_partner.sync.engine.runs import fail, finish, pause, retry_later
from bipsync_partner.sync.models import DocumentSighting, ResearchDocument, SyncRun, may_sync

ApiFactory = Callable[[Connection], BipsyncApi]


def execute(
    run_id: int,
    *,
    api_factory: ApiFactory,
    deadline: float | None = None,
    prefetch: bool = True,
    on_locked: Callable[[], None] | None = None,
) -> Outcome:
    """Work on a run until it ends, fails, must wait, or ``deadline`` (monotonic) passes.

    ``on_locked`` is called once this process holds the connection's lock (the task releases
    its "queued" marker there: from then on the lock says the run is being worked on).
    """
    run = SyncRun.objects.select_related("connection").filter(pk=run_id).first()
    if run is None or run.is_finished:
        return Outcome(DONE, "nothing to do")
    with run_lock(run.connection_id) as locked:
        if not locked:
            return Outcome(DONE, "another worker is running this connection's sync")
        if on_locked is not None:
            on_locked()
        run.refresh_from_db()
        if run.is_finished:
            return Outcome(DONE, "nothing to do")
        return _execute_locked(run, api_factory=api_factory, deadline=deadline, prefetch=prefetch)


def _execute_locked(
    run: SyncRun, *, api_factory: ApiFactory, deadline: float | None, prefetch: bool
) -> Outcome:
    conn = run.connection
    if not may_sync(conn):
        fail(
            run,
            "not_syncable",
            f"This connection cannot sync: it is {conn.get_status_display().lower()}, or its "
            "kind is not enabled for syncing in this team.",
        )
        return Outcome(DONE, "not syncable")
    slot = TenantSemaphore(
        "sync",
        conn.tenant,
        limit=settings.SYNC_TENANT_CONCURRENCY,
        lease_seconds=max(120, settings.SYNC_TASK_TIME_LIMIT),
    )
    if not slot.acquire():
        run.status = SyncRun.Status.QUEUED
        run.error_message = "Waiting for another sync of this Bipsync tenant to finish."
        run.save(update_fields=["status", "error_message"])
        return Outcome(RETRY, "tenant busy", 10.0)
    now = timezone.now()
    run.status = SyncRun.Status.RUNNING
    run.started_at = run.started_at or now
    run.heartbeat_at = now
    run.error_code = ""
    run.error_message = ""
    run.save(update_fields=["status", "started_at", "heartbeat_at", "error_code", "error_message"])
    api: BipsyncApi | None = None
    _set_session(True)
    try:
        # Before the first page: a refresh queued by an earlier run may not have run yet.
        statistics.refresh_if_stale()
        api = api_factory(conn)
        if run.pages == 0 and run.next_offset == 0:
            # Decided before the first page commits and kept with the checkpoint: a resumed
            # first scan finds its own rows stored, and must still know it is a first scan.
            run.first_scan = not DocumentSighting.objects.filter(
                connection_id=run.connection_id
            ).exists()
            run.tenant_was_empty = (
                run.first_scan
                and not ResearchDocument.objects.filter(
                    team_id=conn.team_id, tenant=conn.tenant
                ).exists()
            )
            run.save(update_fields=["first_scan", "tenant_was_empty"])
            sync_metadata(run, api)
        while True:
            _read_to_the_end(run, api, slot, deadline=deadline, prefetch=prefetch)
            # After the research's scan, before the run concludes: the run's progress and
            # notes say what became of each resource (bipsync_partner/sync/resources.py).
            sync_resources(run, api, deadline=deadline, tick=_renewing(slot))
            _record_rate_limits(run, api)
            if finish(run):
                break
        return Outcome(DONE, "succeeded")
    except SliceOver:
        _record_rate_limits(run, api)
        return pause(run, "time slice over")
    except ApiError as error:
        _record_rate_limits(run, api)
        if error.transient:
            return retry_later(run, error)
        fail(run, error.code, error.sentence)
        return Outcome(DONE, "failed")
    finally:
        _record_rate_limits(run, api)  # an unexpected error's; the others are recorded
        if api is not None:
            api.close()
        slot.release()
        _set_session(False)


def _record_rate_limits(run: SyncRun, api: BipsyncApi | None) -> None:
    """Add the 429s the client met since the last call to the run's count. Called before the
    run's outcome is saved, so that whoever sees the run finished sees its count too (recorded
    after it, a reader could find a finished run with none)."""
    if api is None or not api.rate_limited:
        return
    met, api.rate_limited = api.rate_limited, 0
    run.rate_limited_count += met
    SyncRun.objects.filter(pk=run.pk).update(rate_limited_count=F("rate_limited_count") + met)


def _read_to_the_end(
    run: SyncRun,
    api: BipsyncApi,
    slot: TenantSemaphore,
    *,
    deadline: float | None,
    prefetch: bool,
) -> None:
    """Store the listing's pages from the run's checkpoint to the end of the list."""
    steps: Iterator[Step] = scan(
        api, next_offset=run.next_offset, anchor=run.anchor_id, limit=settings.SYNC_PAGE_SIZE
    )
    fetcher = Prefetch(steps) if prefetch else None
    switching = (
        switch_interval(PREFETCH_SWITCH_INTERVAL)
        if fetcher is not None
        else contextlib.nullcontext()
    )
    try:
        with switching:
            renewed = time.monotonic()
            for step in fetcher if fetcher is not None else steps:
                store_page(run, step)
                if time.monotonic() - renewed > 30:  # the lease lasts minutes
                    slot.renew()
                    renewed = time.monotonic()
                # (Not after the list's last page: the slice goes on to conclude the scan.)
                if (
                    deadline is not None
                    and time.monotonic() > deadline
                    and step.next_offset < step.total
                ):
                    raise SliceOver
    finally:
        if fetcher is not None:
            fetcher.close()


def _renewing(slot: TenantSemaphore) -> Callable[[], None]:
    """A callback that renews the tenant slot at most every 30 s (its lease lasts minutes)."""
    renewed = time.monotonic()

    def tick() -> None:
        nonlocal renewed
        if time.monotonic() - renewed > 30:
            slot.renew()
            renewed = time.monotonic()

    return tick


def _set_session(on: bool) -> None:
    """Session settings for the length of a slice.

    ``synchronous_commit = off``: page transactions commit without waiting for the WAL flush.
    A page's rows and its checkpoint commit together, so if Postgres itself crashes and loses the
    last few asynchronously committed pages, it loses their checkpoints with them and the run
    re-reads those pages: nothing is inconsistent, and a flush per page is saved. The end of a
    run (:func:`finish`, :func:`fail`) commits synchronously.

    ``enable_seqscan = off``: every query of a run is a keyed lookup (at most a page of ids on
    the unique index). While a first sync fills the table, the statistics still say it is empty
    and Postgres would scan the growing table for each page: quadratic (a 100,000-document
    re-sync took 74 s instead of seconds). The setting only penalises sequential scans, so a
    query without an index still runs.
    """
    with connection.cursor() as cursor:
        if on:
            cursor.execute("SET synchronous_commit = off")
            cursor.execute("SET enable_seqscan = off")
        else:
            cursor.execute("RESET synchronous_commit")
            cursor.execute("RESET enable_seqscan")
