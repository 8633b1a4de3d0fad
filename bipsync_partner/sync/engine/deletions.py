"""Deletion detection, per connection: a demonstrably complete scan that no longer sees a document
removes the connection's sighting of it; the document is marked deleted when no connection of
the team sees it any more."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from bipsync_partner.sync.api import ApiError
from bipsync_partner.sync.engine.sql import mark_deleted_statement
from bipsync_partner.sync.models import DocumentSighting, ResearchDocument, SyncRun

log = logging.getLogger(__name__)


def _seen_ids(run: SyncRun) -> int:
    """Put the ids the run's scans saw into ``sync_seen_ids``; how many distinct ids they are.

    A temporary table with a primary key, analysed, so that the anti-join of
    :func:`~bipsync_partner.sync.engine.sql.mark_deleted_statement` is an index probe per row
    whatever plan Postgres picks. (Joining against ``unnest`` of the ScanPage arrays directly
    let stale statistics choose a nested loop over the unnested set: quadratic, 1.3 s at 3,000
    documents, hours at 100,000.) Must run inside a transaction: the table is dropped at commit.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE sync_seen_ids (bipsync_id varchar(24) PRIMARY KEY) "
            "ON COMMIT DROP"
        )
        cursor.execute(
            "INSERT INTO sync_seen_ids (bipsync_id) "
            "SELECT DISTINCT unnest(ids) FROM sync_scanpage WHERE run_id = %s",
            [run.pk],
        )
        seen = int(cursor.rowcount)
        cursor.execute("ANALYZE sync_seen_ids")
    return seen


def mark_deleted(run: SyncRun, now: datetime) -> int:
    """The connection's sightings of documents the run's scans did not see are removed (and the
    documents no other connection sees marked deleted); how many sightings went. Needs
    :func:`_seen_ids` first, in the same transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            mark_deleted_statement(ResearchDocument), {"now": now, "connection": run.connection_id}
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


class EmptyListing(ApiError):
    """Bipsync listed nothing where documents are stored from earlier syncs (and the previous
    run did not find the list empty too): the run fails instead of deleting them all."""

    default_code = "empty_listing"

    def __init__(self, stored: int) -> None:
        super().__init__(
            f"Bipsync listed no research documents for this connection, where {stored} are "
            "stored from earlier syncs. None was marked deleted: an empty list is more often a "
            "passing fault at Bipsync or a lost permission than research removed. If the next "
            "sync finds the list empty too, they are marked deleted then."
        )


def _previous_run_found_the_list_empty(run: SyncRun) -> bool:
    previous = (
        SyncRun.objects.filter(connection_id=run.connection_id, finished_at__isnull=False)
        .exclude(pk=run.pk)
        .order_by("-finished_at")
        .values_list("error_code", flat=True)
        .first()
    )
    return previous == EmptyListing.default_code


def _start_confirming_scan(run: SyncRun, missing: int, stored: int) -> None:
    """Read the list again from the start within this run, keeping the first scan's ids: the
    documents marked deleted are then those that neither scan saw."""
    run.add_note(
        f"A scan found {missing} of the {stored} stored documents gone (more than "
        f"{settings.SYNC_CONFIRM_DELETIONS_PERCENT}%), so the list was read a second time; only "
        "documents that neither scan saw are marked deleted.",
    )
    run.confirming_deletions = True
    run.next_offset = 0
    run.anchor_id = ""
    run.seen_count = 0
    run.unchanged_count = 0
    run.passed_count = 0
    run.heartbeat_at = timezone.now()
    run.save(
        update_fields=[
            "notes",
            "confirming_deletions",
            "next_offset",
            "anchor_id",
            "seen_count",
            "unchanged_count",
            "passed_count",
            "heartbeat_at",
        ]
    )
    log.info("Sync run %s reads the list again before marking %d deleted", run.pk, missing)


def decide_deletions(run: SyncRun, now: datetime) -> int | None:
    """Mark deleted what a complete scan did not see; how many, or None when the run must first
    read the list a second time (:func:`_start_confirming_scan`).

    Deletions are marked only after a scan that is demonstrably complete: aligned all along
    (not :attr:`SyncRun.scan_unstable`), its last page at the total Bipsync reported
    (:func:`~.paging.scan`), and its distinct ids plus the items it went past adding up to that
    total. An empty list where documents are stored fails the run (:class:`EmptyListing`) unless the
    previous run found it empty too; a deletion of more than SYNC_CONFIRM_DELETIONS_PERCENT of
    the stored documents waits for a second scan of the list, and only what neither saw goes.
    """
    if run.scan_unstable:
        # "Not seen" may mean "skipped because the list moved", not "deleted"; wrongly
        # deleting research is worse than showing it until the next run decides.
        run.add_note(
            "Bipsync's list changed under the scan in a way it could not realign, so deletions "
            "wait for the next run.",
        )
        return 0
    if run.first_scan:
        # Every sighting of the connection was written by this scan, so seen by it.
        return 0
    seen = _seen_ids(run)
    total = run.total_reported or 0
    if seen + run.passed_count < total:
        run.add_note(
            f"The scan saw {seen} documents where Bipsync reported {total}, so deletions wait "
            "for a complete scan.",
        )
        return 0
    if seen == 0 and not run.confirming_deletions:
        stored = DocumentSighting.objects.filter(connection_id=run.connection_id).count()
        if stored and not _previous_run_found_the_list_empty(run):
            raise EmptyListing(stored)
        if stored:
            run.add_note("Bipsync listed no documents for the second run in a row.")
            return mark_deleted(run, now)
    savepoint = transaction.savepoint()
    missing = mark_deleted(run, now)
    stored = seen + missing  # every id a scan saw is a sighting of the connection
    limit = settings.SYNC_CONFIRM_DELETIONS_PERCENT
    if not run.confirming_deletions and missing * 100 > limit * stored:
        transaction.savepoint_rollback(savepoint)
        _start_confirming_scan(run, missing, stored)
        return None
    transaction.savepoint_commit(savepoint)
    return missing
