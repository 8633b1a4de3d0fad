"""The research sync engine: one run of one connection, resumable, writing only what changed.

Bipsync documents no modified-since filter (docs/bipsync.md, "The REST API slice"), so a run
reads every page of ``GET /v1/research`` (100 per page), and

- hashes each item (SHA-256 of its canonical JSON) and writes only rows that are new, changed or
  come back from deletion, in one bulk upsert per page; an unchanged re-sync writes no document row;
- records the ids each page saw (:class:`~bipsync_partner.sync.models.ScanPage`) in the same
  transaction as the page's rows and the run's checkpoint (next offset, counts), so a run killed
  at any point resumes at the first page it had not committed, with the same scan id;
- marks as deleted, only after the last page of a *complete* scan, the rows the scan did not see
  (a connection's first scan, which finds nothing stored, records no ids and deletes nothing:
  every row it stores is one it saw). Complete means the last page ends at the total Bipsync
  reported (else the run waits and reads on from its checkpoint) and the ids seen, with the
  items the scan knowingly went past, add up to that total. An empty list where documents are
  stored fails the run unless the previous run found it empty too; a deletion of more than
  ``SYNC_CONFIRM_DELETIONS_PERCENT`` of the stored documents waits for a second scan of the
  list in the same run, and only what neither scan saw is marked deleted (:func:`_deletions`);
- keeps each page aligned with the last id it read (:func:`scan`), so a list that changes during
  the scan cannot make it skip documents unnoticed;
- holds one page at a time (and prefetches at most one more), so memory does not grow with the
  number of documents.

One run per connection at a time: a Postgres advisory lock keyed by the connection, held by the
worker's database session for the whole slice (released by Postgres if the worker dies, which is
what lets a restarted worker resume at once). Session locks need a session: behind PgBouncer, use
session pooling for workers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from bipsync_partner.connections.models import Connection
from bipsync_partner.coordination import TenantSemaphore
from bipsync_partner.ops import metrics
from bipsync_partner.ops.interpreter import switch_interval
from bipsync_partner.sync.api import ApiError, BipsyncApi, InsufficientScope
from bipsync_partner.sync.models import (
    ResearchDocument,
    ScanPage,
    SyncedContentType,
    SyncedField,
    SyncRun,
    SyncSchedule,
    may_sync,
)

log = logging.getLogger(__name__)

RESEARCH_PATH = "/v1/research"
CONTENT_TYPE_PATH = "/v1/contenttype"
FIELD_PATH = "/v1/field"
BIPSYNC_ID = re.compile(r"^[0-9a-f]{24}$")
LOCK_NAMESPACE = "bipsync-partner.sync.run"
#: A run that created or deleted this many rows refreshes the table's statistics when it ends.
ANALYZE_AFTER_CHANGES = 5000

ApiFactory = Callable[[Connection], BipsyncApi]


# --- outcomes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a slice of work ended with, and what the task should do next.

    ``action``: ``done`` (nothing more to do), ``continue`` (queue the next slice now),
    ``retry`` (queue again after ``countdown`` seconds).
    """

    action: str
    reason: str
    countdown: float = 0.0


DONE = "done"
CONTINUE = "continue"
RETRY = "retry"


class SliceOver(Exception):
    """The slice's time is up; the run continues in a new task from its checkpoint."""


# --- the lock ------------------------------------------------------------------------------------


def lock_key(connection_id: uuid.UUID | str) -> int:
    """A signed 64-bit advisory lock key for "the sync of this connection" (its UUID hashed
    with a namespace, so that other advisory locks in the database cannot collide with it)."""
    digest = hashlib.blake2b(f"{LOCK_NAMESPACE}:{connection_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def try_lock(connection_id: uuid.UUID | str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock_key(connection_id)])
        row = cursor.fetchone()
    return bool(row and row[0])


def unlock(connection_id: uuid.UUID | str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_key(connection_id)])


@contextlib.contextmanager
def run_lock(connection_id: uuid.UUID | str, *, attempts: int = 5) -> Iterator[bool]:
    """Hold the connection's sync lock for the block; yields False when another session has it.

    A few short tries: the due-runs sweep probes the lock for a moment, and a task arriving at
    that moment must not give up.
    """
    got = False
    for attempt in range(attempts):
        got = try_lock(connection_id)
        if got:
            break
        time.sleep(0.05 * (attempt + 1))
    try:
        yield got
    finally:
        if got:
            unlock(connection_id)


def lock_is_free(connection_id: uuid.UUID | str) -> bool:
    """Whether no session holds the connection's sync lock (probes by taking it briefly)."""
    if try_lock(connection_id):
        unlock(connection_id)
        return True
    return False


# --- turning Bipsync items into rows ---------------------------------------------------------------


def content_hash(item: dict[str, Any]) -> str:
    """SHA-256 of the item's canonical JSON (sorted keys, compact, UTF-8): any change Bipsync
    reports changes the hash. orjson does it about ten times faster than ``json``; it refuses
    integers beyond 64 bits, for which ``json`` gives the same canonical text."""
    try:
        canonical = orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        canonical = json.dumps(
            item, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
    return hashlib.sha256(canonical).hexdigest()


def _json_text(value: object) -> str:
    try:
        return orjson.dumps(value).decode("utf-8")
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False)


def _bipsync_id(value: object) -> str | None:
    return value if isinstance(value, str) and BIPSYNC_ID.fullmatch(value) else None


def _ref(value: object) -> tuple[str, str]:
    """(id, display name) of a reference that may be an id or an object."""
    if isinstance(value, dict):
        ref_id = value.get("id") or value.get("_id") or ""
        name = value.get("name") or value.get("displayName") or ""
        if not name:
            first, last = value.get("firstName") or "", value.get("lastName") or ""
            name = f"{first} {last}".strip() or value.get("email") or ""
        return str(ref_id)[:64], str(name)[:200]
    if isinstance(value, str):
        return value[:64], ""
    return "", ""


#: ISO-8601 date-times as Bipsync writes them; Postgres parses these itself.
_ISO_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?"
)


def _iso(value: object) -> str | None:
    """The timestamp as given when it is well-formed ISO 8601, else None: it goes to Postgres
    as text (re-parsing 200 timestamps a page in Python cost more than the rest of the row)."""
    if isinstance(value, str) and _ISO_DATETIME.fullmatch(value):
        return value
    return None


def document_row(bid: str, digest: str, item: dict[str, Any]) -> dict[str, Any]:
    """The columns of a document row that come from the item, JSON-ready."""
    content_type, _ = _ref(item.get("contentType"))
    author_id, author_name = _ref(item.get("user"))
    fields = item.get("fields")
    return {
        "bipsync_id": bid,
        "title": str(item.get("title") or ""),
        "content_type_bid": content_type,
        "author_bid": author_id,
        "author_name": author_name,
        "lookup_fields": fields if isinstance(fields, dict) else {},
        "bipsync_created": _iso(item.get("created")),
        "bipsync_modified": _iso(item.get("modified")),
        "content_hash": digest,
    }


# --- one page ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """What one page of a scan brings: the items not read before, and the new checkpoint."""

    offset: int
    items: list[dict[str, Any]]
    total: int
    next_offset: int
    anchor: str
    unstable: bool
    #: Items the list gained ahead of the scan's position since the previous page (the anchor
    #: found further in): the scan goes past them, and they count towards the total.
    passed: int = 0


def _ids(results: list[dict[str, Any]]) -> list[object]:
    return [item.get("id") for item in results]


def scan(
    api: BipsyncApi, *, next_offset: int, anchor: str, limit: int, path: str = RESEARCH_PATH
) -> Iterator[Step]:
    """Read the listing from a checkpoint to its end, one page at a time, keeping aligned.

    Offset paging over a list that changes can skip items: a deletion before the reader's
    position moves later items to offsets already read. Each page therefore starts one item
    early, at the last id read (the anchor). The anchor first: aligned. The anchor further in:
    items were inserted before it (nothing skipped; the items after it are new). The anchor
    absent: the list moved back; the page one page earlier is read and the anchor looked for
    there. If it is gone altogether (deleted itself), the scan is *unstable*: it goes on, but its
    "not seen" no longer means "deleted", so the run marks no deletions.

    The listing must end where its total says: a last page that stops short of the total it
    reports (an empty answer with a total, a truncated page) raises a transient
    ``incomplete_listing`` :class:`ApiError` once that page is handed over, so the run waits and
    reads on from its checkpoint instead of concluding from a partial scan.
    """
    steps = 0
    while True:
        steps += 1
        unstable = False
        passed = 0
        if next_offset == 0 or not anchor:
            page = api.page(path, offset=next_offset, limit=limit)
            items = page.results
        else:
            page = api.page(path, offset=next_offset - 1, limit=limit)
            ids = _ids(page.results)
            if anchor in ids:
                # Expected first; each place further in is an item inserted ahead of it.
                passed = ids.index(anchor)
                items = page.results[passed + 1 :]
            else:
                earlier = api.page(path, offset=max(0, next_offset - 1 - limit), limit=limit)
                earlier_ids = _ids(earlier.results)
                if anchor in earlier_ids:
                    page = earlier
                    items = earlier.results[earlier_ids.index(anchor) + 1 :]
                else:
                    unstable = True
                    items = page.results
        next_offset = page.offset + len(page.results)
        last_ids = [i for i in _ids(page.results) if _bipsync_id(i)]
        anchor = str(last_ids[-1]) if last_ids else anchor
        yield Step(page.offset, items, page.total, next_offset, anchor, unstable, passed)
        if len(page.results) < limit or next_offset >= page.total:
            if next_offset < page.total:
                raise ApiError(
                    f"Bipsync's list of research ended after {next_offset} of the "
                    f"{page.total} documents it reported; the sync will read on from there, "
                    "and marks nothing deleted before a scan is complete.",
                    code="incomplete_listing",
                    transient=True,
                )
            return
        if steps > 3 * (page.total // max(1, limit - 1)) + 10:
            raise ApiError(
                "Bipsync's list kept shifting while it was read; the sync will try again.",
                code="unstable_listing",
                transient=True,
            )


@dataclass
class PageResult:
    seen: int
    created: int
    updated: int
    unchanged: int


# One statement per page, atomic on its own: the new and changed rows (one JSON parameter that
# Postgres expands: building a 100-row, 15-column INSERT literal by literal on the client cost
# more than the database work), the page's ids (one comma-joined string of validated 24-hex
# ids; not during a first scan, see SyncRun.first_scan) and the run's checkpoint and counts.
# RETURNING (xmax = 0) tells an insert from an update. The columns are ResearchDocument's; tests
# compare every synced row with Bipsync's item.
_INSERT = """
up AS (
    INSERT INTO sync_researchdocument (
        connection_id, team_id, tenant, bipsync_id, title, content_type_bid, author_bid,
        author_name, lookup_fields, bipsync_created, bipsync_modified, content_hash,
        first_synced_at, changed_at, deleted_at
    )
    SELECT %(connection)s, %(team)s, %(tenant)s, r.bipsync_id, r.title, r.content_type_bid,
           r.author_bid, r.author_name, r.lookup_fields, r.bipsync_created, r.bipsync_modified,
           r.content_hash, %(now)s, %(now)s, NULL
    FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
        bipsync_id varchar, title text, content_type_bid varchar, author_bid varchar,
        author_name varchar, lookup_fields jsonb, bipsync_created timestamptz,
        bipsync_modified timestamptz, content_hash varchar
    )
"""
_ON_CONFLICT = """
    ON CONFLICT (connection_id, bipsync_id) DO UPDATE SET
        team_id = EXCLUDED.team_id, tenant = EXCLUDED.tenant, title = EXCLUDED.title,
        content_type_bid = EXCLUDED.content_type_bid, author_bid = EXCLUDED.author_bid,
        author_name = EXCLUDED.author_name, lookup_fields = EXCLUDED.lookup_fields,
        bipsync_created = EXCLUDED.bipsync_created, bipsync_modified = EXCLUDED.bipsync_modified,
        content_hash = EXCLUDED.content_hash, changed_at = EXCLUDED.changed_at, deleted_at = NULL
"""
_COUNTS = """
    RETURNING (xmax = 0) AS inserted
),
counts AS (
    SELECT count(*) FILTER (WHERE inserted) AS created,
           count(*) FILTER (WHERE NOT inserted) AS updated
    FROM up
),
"""
_SCAN_PAGE = """
page AS (
    INSERT INTO sync_scanpage (run_id, seq, "offset", ids)
    VALUES (%(run)s, %(seq)s, %(offset)s, string_to_array(%(ids)s, ',')::varchar(24)[])
),
"""
_CHECKPOINT = """
checkpoint AS (
    UPDATE sync_syncrun
    SET seen_count = seen_count + %(seen)s,
        created_count = created_count + counts.created,
        updated_count = updated_count + counts.updated,
        unchanged_count = unchanged_count + %(seen)s - counts.created - counts.updated,
        passed_count = passed_count + %(passed)s,
        pages = %(seq)s, total_reported = %(total)s, next_offset = %(next_offset)s,
        anchor_id = %(anchor)s, scan_unstable = %(unstable)s, heartbeat_at = %(now)s
    FROM counts
    WHERE id = %(run)s
)
SELECT created, updated FROM counts
"""
_PAGE = "WITH" + _INSERT + _ON_CONFLICT + _COUNTS + _SCAN_PAGE + _CHECKPOINT
_FIRST_SCAN_PAGE = "WITH" + _INSERT + _ON_CONFLICT + _COUNTS + _CHECKPOINT
# A first scan inserts without ON CONFLICT: nothing of the connection is stored but what the scan
# itself wrote, so a conflict means it met a document a second time (the list moved under it and
# took the anchor away). A plain insert skips the upsert's speculative insertion (a tenth of the
# page's database time); on a conflict the page's statement fails whole, and the page is written
# again with _FIRST_SCAN_PAGE.
_FIRST_SCAN_INSERT = "WITH" + _INSERT + _COUNTS + _CHECKPOINT
_DOCUMENT_KEY = "one_document_per_connection"


_KNOWN = """
SELECT bipsync_id, content_hash, deleted_at IS NOT NULL
FROM sync_researchdocument
WHERE connection_id = %(connection)s AND bipsync_id = ANY(string_to_array(%(ids)s, ','))
"""


def store_page(run: SyncRun, step: Step) -> PageResult:
    """Write a page's new and changed documents, its ids and the run's checkpoint, atomically.

    Unchanged items (the common case of an hourly re-sync) cost a hash and nothing else: no row
    building, no date parsing, no write. Two statements per page: the stored hashes of the
    page's ids, then :data:`_PAGE` with the rows that differ. A first scan
    (:attr:`SyncRun.first_scan`) skips the lookup, as every stored row is one it wrote, and
    records no ids (:data:`_FIRST_SCAN_PAGE`), as it has nothing to mark deleted.
    """
    now = timezone.now()
    items: dict[str, tuple[str, dict[str, Any]]] = {}
    passed = step.passed
    for item in step.items:
        bid = _bipsync_id(item.get("id"))
        if bid is None:
            log.warning("Skipped an item without a valid Bipsync id near offset %d", step.offset)
            passed += 1
            continue
        # The same id twice on one page (the list shifted under us) counts once.
        items[bid] = (content_hash(item), item)
    known: dict[str, tuple[str, bool]] = {}
    connection.ensure_connection()
    if not run.first_scan and items:
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(_KNOWN, {"connection": run.connection_id, "ids": ",".join(items)})
            known = {bid: (digest, gone) for bid, digest, gone in cursor.fetchall()}
    rows = [
        document_row(bid, digest, item)
        for bid, (digest, item) in items.items()
        if known.get(bid) != (digest, False)
    ]
    pages = run.pages + 1
    # Server-side binding: the parameters travel beside the statement, so the ~60 KB JSON of a
    # page is not escaped into a literal on the client (Django's cursors bind client-side).
    # Django's connection is in autocommit here, so the statement commits on its own.
    if not run.first_scan:
        statement = _PAGE
    elif connection.get_autocommit():
        statement = _FIRST_SCAN_INSERT
    else:  # a failed statement would abort the caller's transaction: no second try there
        statement = _FIRST_SCAN_PAGE
    with psycopg.Cursor(connection.connection) as cursor:
        params = {
            "connection": run.connection_id,
            "team": run.connection.team_id,
            "tenant": run.connection.tenant,
            "rows": _json_text(rows),
            "now": now,
            "run": run.pk,
            "seq": pages,
            "offset": step.offset,
            "ids": ",".join(items),
            "seen": len(items),
            "passed": passed,
            "total": step.total,
            "next_offset": step.next_offset,
            "anchor": step.anchor,
            "unstable": run.scan_unstable or step.unstable,
        }
        try:
            cursor.execute(statement, params)
        except psycopg.errors.UniqueViolation as exc:
            if statement is not _FIRST_SCAN_INSERT or exc.diag.constraint_name != _DOCUMENT_KEY:
                raise
            cursor.execute(_FIRST_SCAN_PAGE, params)
        row = cursor.fetchone()
    created, updated = (int(row[0]), int(row[1])) if row else (0, 0)
    result = PageResult(
        seen=len(items),
        created=created,
        updated=updated,
        unchanged=len(items) - created - updated,
    )
    # The row now holds what the statement wrote; keep the instance in step with it.
    run.seen_count += result.seen
    run.created_count += result.created
    run.updated_count += result.updated
    run.unchanged_count += result.unchanged
    run.passed_count += passed
    run.pages = pages
    run.total_reported = step.total
    run.next_offset = step.next_offset
    run.anchor_id = step.anchor
    run.scan_unstable = run.scan_unstable or step.unstable
    run.heartbeat_at = now
    return result


# --- content types and fields (small lists, read whole) -------------------------------------------


def _sync_small_table(
    model: type[SyncedContentType] | type[SyncedField],
    run: SyncRun,
    items: list[dict[str, Any]],
    build: Callable[[dict[str, Any]], dict[str, Any]],
) -> int:
    now = timezone.now()
    conn = run.connection
    known = {
        bid: (digest, deleted_at)
        for bid, digest, deleted_at in model.objects.filter(connection=conn).values_list(
            "bipsync_id", "content_hash", "deleted_at"
        )
    }
    seen: set[str] = set()
    rows = []
    for item in items:
        bid = _bipsync_id(item.get("id"))
        if bid is None or bid in seen:
            continue
        seen.add(bid)
        digest = content_hash(item)
        previous = known.get(bid)
        if previous is not None and previous[0] == digest and previous[1] is None:
            continue
        rows.append(
            model(
                connection=conn,
                team_id=conn.team_id,
                tenant=conn.tenant,
                bipsync_id=bid,
                content_hash=digest,
                first_synced_at=now,
                changed_at=now,
                deleted_at=None,
                **build(item),
            )
        )
    with transaction.atomic():
        if rows:
            update_fields = [
                f.name
                for f in model._meta.concrete_fields
                if f.name not in {"id", "connection", "bipsync_id", "first_synced_at"}
            ]
            model.objects.bulk_create(
                rows,  # type: ignore[arg-type]
                update_conflicts=True,
                unique_fields=["connection", "bipsync_id"],
                update_fields=update_fields,
            )
        gone = [bid for bid, (_, deleted_at) in known.items() if bid not in seen and not deleted_at]
        if gone and not seen:
            # As for documents: an empty list where rows are stored is more often a fault than
            # a tenant without content types; the rows stay until a list names others.
            _note(
                run,
                f"Bipsync listed no {model._meta.verbose_name_plural}; the {len(gone)} stored "
                "are kept.",
            )
            run.save(update_fields=["notes"])
        elif gone:
            model.objects.filter(connection=conn, bipsync_id__in=gone).update(
                deleted_at=now, changed_at=now
            )
    return len(seen)


def _content_type(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": str(item.get("name") or "")[:200],
        "display_name": str(item.get("displayName") or item.get("name") or "")[:200],
    }


def _field(item: dict[str, Any]) -> dict[str, Any]:
    content_type, _ = _ref(item.get("contentType"))
    order = item.get("order")
    options = item.get("options")
    return {
        "api_identifier": str(item.get("apiIdentifier") or "")[:200],
        "name": str(item.get("name") or "")[:200],
        "field_type": str(item.get("fieldType") or "")[:64],
        "options": options if isinstance(options, list | dict) else [],
        "content_type_bid": content_type,
        "order": order if isinstance(order, int) and not isinstance(order, bool) else None,
        "disabled": bool(item.get("disabled")),
    }


def sync_metadata(run: SyncRun, api: BipsyncApi) -> None:
    limit = settings.SYNC_PAGE_SIZE
    run.content_types_count = _sync_small_table(
        SyncedContentType, run, api.all_items(CONTENT_TYPE_PATH, limit=limit), _content_type
    )
    try:
        fields = api.all_items(FIELD_PATH, limit=limit)
    except InsufficientScope:
        # /v1/field needs rest_api:fields:read (docs/bipsync.md, "Scopes"); documents sync
        # without it, so its absence is a note, not a failure.
        run.notes = "Fields were not synced: the grant lacks the rest_api:fields:read scope."
        run.save(update_fields=["notes"])
    else:
        run.fields_count = _sync_small_table(SyncedField, run, fields, _field)
    run.heartbeat_at = timezone.now()
    run.save(update_fields=["content_types_count", "fields_count", "heartbeat_at"])


# --- the end of a run -----------------------------------------------------------------------------

_MARK_DELETED = """
UPDATE sync_researchdocument AS d
SET deleted_at = %(now)s, changed_at = %(now)s
WHERE d.connection_id = %(connection)s
  AND d.deleted_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM sync_seen_ids AS s WHERE s.bipsync_id = d.bipsync_id)
"""


def _seen_ids(run: SyncRun) -> int:
    """Put the ids the run's scans saw into ``sync_seen_ids``; how many distinct ids they are.

    A temporary table with a primary key, analysed, so that the anti-join of
    :data:`_MARK_DELETED` is an index probe per row whatever plan Postgres picks. (Joining
    against ``unnest`` of the ScanPage arrays directly let stale statistics choose a nested loop
    over the unnested set: quadratic, 1.3 s at 3,000 documents, hours at 100,000.) Must run
    inside a transaction: the table is dropped at commit.
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
    """Rows of the connection that the run's scans did not see are marked deleted; how many.
    Needs :func:`_seen_ids` first, in the same transaction."""
    with connection.cursor() as cursor:
        cursor.execute(_MARK_DELETED, {"now": now, "connection": run.connection_id})
        return int(cursor.rowcount)


def _durable_commit() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = on")


_ANALYZE = (
    "ANALYZE sync_researchdocument (connection_id, team_id, deleted_at, bipsync_modified, "
    "bipsync_id, content_type_bid, author_bid, title)"
)


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


def _note(run: SyncRun, sentence: str) -> None:
    run.notes = f"{run.notes} {sentence}".strip()


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
    _note(
        run,
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


def _deletions(run: SyncRun, now: datetime) -> int | None:
    """Mark deleted what a complete scan did not see; how many, or None when the run must first
    read the list a second time (:func:`_start_confirming_scan`).

    Deletions are marked only after a scan that is demonstrably complete: aligned all along
    (not :attr:`SyncRun.scan_unstable`), its last page at the total Bipsync reported
    (:func:`scan`), and its distinct ids plus the items it went past adding up to that total.
    An empty list where documents are stored fails the run (:class:`EmptyListing`) unless the
    previous run found it empty too; a deletion of more than SYNC_CONFIRM_DELETIONS_PERCENT of
    the stored documents waits for a second scan of the list, and only what neither saw goes.
    """
    if run.scan_unstable:
        # "Not seen" may mean "skipped because the list moved", not "deleted"; wrongly
        # deleting research is worse than showing it until the next run decides.
        _note(
            run,
            "Bipsync's list changed under the scan in a way it could not realign, so deletions "
            "wait for the next run.",
        )
        return 0
    if run.first_scan:
        # Every stored row of the connection was written by this scan, so seen by it.
        return 0
    seen = _seen_ids(run)
    total = run.total_reported or 0
    if seen + run.passed_count < total:
        _note(
            run,
            f"The scan saw {seen} documents where Bipsync reported {total}, so deletions wait "
            "for a complete scan.",
        )
        return 0
    if seen == 0 and not run.confirming_deletions:
        stored = ResearchDocument.objects.filter(
            connection_id=run.connection_id, deleted_at__isnull=True
        ).count()
        if stored and not _previous_run_found_the_list_empty(run):
            raise EmptyListing(stored)
        if stored:
            _note(run, "Bipsync listed no documents for the second run in a row.")
            return mark_deleted(run, now)
    savepoint = transaction.savepoint()
    missing = mark_deleted(run, now)
    stored = seen + missing  # every id a scan saw is stored, live
    limit = settings.SYNC_CONFIRM_DELETIONS_PERCENT
    if not run.confirming_deletions and missing * 100 > limit * stored:
        transaction.savepoint_rollback(savepoint)
        _start_confirming_scan(run, missing, stored)
        return None
    transaction.savepoint_commit(savepoint)
    return missing


def finish(run: SyncRun) -> bool:
    """The scan reached the end of the list: conclude the run, or start its confirming scan
    (False: the caller reads the list again from the run's reset checkpoint)."""
    now = timezone.now()
    with transaction.atomic():
        _durable_commit()
        deleted = _deletions(run, now)
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
    if run.created_count + run.deleted_count >= ANALYZE_AFTER_CHANGES:
        # Fresh statistics for the research browser and the next run's plans; autovacuum
        # would get there, but not before the next sync of a just-filled table. Only the
        # columns queries filter and sort on: the statistics of lookup_fields (JSON) were half
        # the cost (0.37 of 0.75 s at 90,000 rows), and autovacuum's analyses still cover them.
        with connection.cursor() as cursor:
            cursor.execute(_ANALYZE)
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


def _retry_later(run: SyncRun, error: ApiError) -> Outcome:
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


# --- pages, one ahead ------------------------------------------------------------------------------


#: Pages read ahead of the one being written: enough to ride out a slow answer, few enough that
#: memory stays a handful of pages whatever the number of documents.
PREFETCH_PAGES = 2


#: The interpreter's thread switch interval while pages are read ahead (Python's default is
#: 5 ms). The reading thread wakes several times per page (each chunk of the answer) and then
#: waits for the writing thread's hashing to give up the interpreter lock; a shorter interval
#: hands it over sooner (30,000 documents, 4 rounds each: median 0.60 -> 0.64 of the raw rate).
PREFETCH_SWITCH_INTERVAL = 0.0005


class _Prefetch:
    """Reads the next pages in a thread while the current one is written: the run then takes
    about max(fetch, write) per page instead of their sum. The queue holds PREFETCH_PAGES pages,
    so at most that many plus one are in memory whatever the number of documents."""

    _END = object()

    def __init__(self, pages: Iterator[Step]) -> None:
        self._pages = pages
        self._queue: queue.Queue[object] = queue.Queue(maxsize=PREFETCH_PAGES)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sync-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for page in self._pages:
                if not self._put(page):
                    return
            self._put(self._END)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)
        finally:
            # The token service may have used this thread's database connection.
            close_old_connections()
            connection.close()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Step]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, Step)
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


# --- a slice of a run ------------------------------------------------------------------------------


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
        api = api_factory(conn)
        if run.pages == 0 and run.next_offset == 0:
            # Decided before the first page commits and kept with the checkpoint: a resumed
            # first scan finds its own rows stored, and must still know it is a first scan.
            run.first_scan = not ResearchDocument.objects.filter(
                connection_id=run.connection_id
            ).exists()
            run.save(update_fields=["first_scan"])
            sync_metadata(run, api)
        while True:
            _read_to_the_end(run, api, slot, deadline=deadline, prefetch=prefetch)
            if finish(run):
                break
        return Outcome(DONE, "succeeded")
    except SliceOver:
        return _pause(run, "time slice over")
    except ApiError as error:
        if error.transient:
            return _retry_later(run, error)
        fail(run, error.code, error.sentence)
        return Outcome(DONE, "failed")
    finally:
        if api is not None:
            run.rate_limited_count += api.rate_limited
            SyncRun.objects.filter(pk=run.pk).update(
                rate_limited_count=F("rate_limited_count") + api.rate_limited
            )
            api.close()
        slot.release()
        _set_session(False)


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
    fetcher = _Prefetch(steps) if prefetch else None
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
                if deadline is not None and time.monotonic() > deadline:
                    raise SliceOver
    finally:
        if fetcher is not None:
            fetcher.close()


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


def _pause(run: SyncRun, reason: str) -> Outcome:
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
    return _retry_later(run, error)
