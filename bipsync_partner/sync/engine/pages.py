"""Storing one page: hash each item, look up the stored hashes, write what differs with the
page's ids and the run's checkpoint in one statement."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from django.db import connection
from django.db.models import F
from django.utils import timezone

from bipsync_partner.sync.engine.documents import look_up, plan_writes, store_documents
from bipsync_partner.sync.engine.hashing import content_hash, json_text
from bipsync_partner.sync.engine.items import valid_id
from bipsync_partner.sync.engine.paging import Step
from bipsync_partner.sync.engine.results import ConnectionGone, PageResult
from bipsync_partner.sync.engine.sql import key_constraint, page_statement
from bipsync_partner.sync.models import ResearchDocument, SyncRun

log = logging.getLogger(__name__)


def store_page(run: SyncRun, step: Step) -> PageResult:
    """Write a page's new and changed documents, its ids and the run's checkpoint, atomically.

    Unchanged items (the common case of an hourly re-sync) cost a hash and nothing else: no row
    building, no date parsing, no write. Two statements per page: the stored hashes of the
    page's ids (and whether this connection already sees them), then
    :func:`~bipsync_partner.sync.engine.sql.page_statement` with the rows that differ and the
    documents the connection sees for the first time. A document another connection stored
    unchanged costs only its sighting (and, when a disconnect removed it in between, a second
    statement that stores it again: :func:`resight`). The first scan of a tenant
    (:attr:`SyncRun.tenant_was_empty`) skips the lookup, as every stored row is one it wrote; a
    connection's first scan (:attr:`SyncRun.first_scan`) records no ids, as it has no sighting
    to remove.
    """
    now = timezone.now()
    items: dict[str, tuple[str, dict[str, Any]]] = {}
    passed = step.passed
    for item in step.items:
        bid = valid_id(item.get("id"))
        if bid is None:
            log.warning("Skipped an item without a valid Bipsync id near offset %d", step.offset)
            passed += 1
            continue
        # The same id twice on one page (the list shifted under us) counts once.
        items[bid] = (content_hash(item), item)
    conn = run.connection
    known = look_up(conn, items) if not run.tenant_was_empty and items else {}
    writes = plan_writes(items, known, near=step.offset)
    pages = run.pages + 1
    # Server-side binding: the parameters travel beside the statement, so the ~60 KB JSON of a
    # page is not escaped into a literal on the client (Django's cursors bind client-side).
    # Django's connection is in autocommit here, so the statement commits on its own.
    # The first scan of a tenant inserts without ON CONFLICT: nothing of the tenant is stored but
    # what the scan itself wrote, so a conflict means it met a document a second time (the list
    # moved under it and took the anchor away), or another connection's sync of the tenant
    # stored it meanwhile. A plain insert skips the upsert's speculative insertion (a tenth of
    # the page's database time); on a conflict the page's statement fails whole, and the page is
    # written again as an upsert.
    record_ids = not run.first_scan
    plain_insert = run.tenant_was_empty and connection.get_autocommit()
    # (Outside autocommit a failed statement would abort the caller's transaction: no second
    # try there, so the first is the upsert.)
    statement = page_statement(ResearchDocument, upsert=not plain_insert, record_ids=record_ids)
    with psycopg.Cursor(connection.connection) as cursor:
        params = {
            "connection": run.connection_id,
            "team": conn.team_id,
            "tenant": conn.tenant,
            "rows": json_text(writes.rows),
            "sight": ",".join(writes.sight),
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
            if not plain_insert or exc.diag.constraint_name != key_constraint(ResearchDocument):
                raise
            cursor.execute(page_statement(ResearchDocument, upsert=True, record_ids=False), params)
        row = cursor.fetchone()
    created, updated, sighted, held = (int(value) for value in row) if row else (0, 0, 0, 0)
    if not held:
        raise ConnectionGone(f"Connection {run.connection_id} was deleted during its sync.")
    if sighted < len(writes.to_sight):
        # A stored document was removed between the look-up and the statement (a disconnect
        # of the connection that alone saw it): stored again, as this connection sees it.
        again = resight(run, {bid: items[bid][1] for bid in writes.to_sight})
        created, updated, sighted = (
            created + again.created,
            updated + again.updated,
            sighted + again.sighted,
        )
    result = PageResult(
        seen=len(items),
        created=created,
        updated=updated,
        unchanged=len(items) - created - updated,
        sighted=sighted,
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


def resight(run: SyncRun, wanted: dict[str, dict[str, Any]]) -> PageResult:
    """Store again, and sight, those of ``wanted`` (id -> item) that the run's connection does
    not see; the run's counts take what that wrote (the page's statement counted it
    unchanged)."""
    again = store_documents(run.connection, list(wanted.values()))
    log.info("Sync run %s: %d documents removed meanwhile stored again", run.pk, again.created)
    SyncRun.objects.filter(pk=run.pk).update(
        created_count=F("created_count") + again.created,
        updated_count=F("updated_count") + again.updated,
        unchanged_count=F("unchanged_count") - again.created - again.updated,
    )
    return again
