"""Some documents of one connection outside a full scan: what a hint names, what the poll for
new research finds. They go through the page's own statement (the same hashes, history,
sightings and "an older view never overwrites a newer one" rule), without a run: no scan ids, no
checkpoint, no deletion detection, which stays the full scan's. What is stored of some ids
(:func:`look_up`) and what to write of them (:func:`plan_writes`) serve a scan's page too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.db import connection
from django.utils import timezone

from bipsync_partner.connections.models import Connection
from bipsync_partner.sync.engine.hashing import content_hash, json_text
from bipsync_partner.sync.engine.items import ResearchItem, document_row, parse, valid_id
from bipsync_partner.sync.engine.results import ConnectionGone, PageResult
from bipsync_partner.sync.engine.sql import (
    documents_statement,
    known_statement,
    unsight_statement,
)
from bipsync_partner.sync.models import ResearchDocument

#: Of a page's ids, those stored: id -> (content hash, marked deleted, the connection sees it).
Known = dict[str, tuple[str, bool, bool]]


def look_up(conn: Connection, ids: Iterable[str]) -> Known:
    """The stored hash and deletedness of each of ``ids`` (valid Bipsync ids: the caller
    checks them) stored for the connection's team and tenant, and whether the connection
    already sees it."""
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            known_statement(ResearchDocument),
            {
                "team": conn.team_id,
                "tenant": conn.tenant,
                "connection": conn.pk,
                "ids": ",".join(ids),
            },
        )
        return {bid: (digest, gone, sighted) for bid, digest, gone, sighted in cursor}


@dataclass
class Writes:
    """What a statement writes of some items: the rows that differ from the stored ones, the
    ids the connection sees for the first time (``sight``), and of those the ones that will
    have a row to sight (stored, or written now): fewer sightings than that means a stored
    document was removed in between."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    sight: list[str] = field(default_factory=list)
    to_sight: list[str] = field(default_factory=list)


def plan_writes(hashed: dict[str, tuple[str, dict[str, Any]]], known: Known, near: int) -> Writes:
    """The writes for ``hashed`` (id -> (hash, item)) against what is ``known``."""
    writes = Writes()
    for bid, (digest, item) in hashed.items():
        stored = known.get(bid)
        if stored is None or not stored[2]:
            writes.sight.append(bid)  # the connection sees it for the first time
            if stored is not None:
                writes.to_sight.append(bid)
        if stored is not None and stored[:2] == (digest, False):
            continue  # unchanged: it fitted the schema when it was stored, so it still does
        parsed = parse(ResearchItem, item, near=near)
        if parsed is not None:  # None: seen (a stored copy stays live), but not written
            writes.rows.append(document_row(parsed, digest))
            if stored is None:
                writes.to_sight.append(bid)
    return writes


def known_live(conn: Connection, ids: Iterable[str]) -> set[str]:
    """Of ``ids``, those stored live that the connection already sees."""
    wanted = [bid for bid in ids if valid_id(bid)]
    if not wanted:
        return set()
    return {
        bid
        for bid, (_digest, gone, sighted) in look_up(conn, wanted).items()
        if sighted and not gone
    }


def store_documents(
    conn: Connection, items: Sequence[dict[str, Any]], *, again: bool = True
) -> PageResult:
    """Upsert ``items`` (in the shape of ``GET /v1/research``) as the connection's view: rows
    whose hash differs are written, the connection's new sightings recorded. A stored document
    removed between the look-up and the write (a disconnect of the connection that alone saw
    it) is stored again, once (``again``)."""
    hashed: dict[str, tuple[str, dict[str, Any]]] = {}
    for item in items:
        bid = valid_id(item.get("id"))
        if bid is not None:
            hashed[bid] = (content_hash(item), item)
    if not hashed:
        return PageResult(seen=0, created=0, updated=0, unchanged=0)
    writes = plan_writes(hashed, look_up(conn, hashed), near=0)
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            documents_statement(ResearchDocument),
            {
                "connection": conn.pk,
                "team": conn.team_id,
                "tenant": conn.tenant,
                "rows": json_text(writes.rows),
                "sight": ",".join(writes.sight),
                "now": timezone.now(),
            },
        )
        row = cursor.fetchone()
    created, updated, sighted, held = (int(value) for value in row) if row else (0, 0, 0, 0)
    if not held:
        raise ConnectionGone(f"Connection {conn.pk} was deleted before its documents were stored.")
    if sighted < len(writes.to_sight) and again:
        retried = store_documents(conn, [hashed[bid][1] for bid in writes.to_sight], again=False)
        created, updated = created + retried.created, updated + retried.updated
        sighted += retried.sighted
    return PageResult(
        seen=len(hashed),
        created=created,
        updated=updated,
        unchanged=len(hashed) - created - updated,
        sighted=sighted,
    )


def unsight(conn: Connection, ids: Iterable[str]) -> int:
    """The connection no longer sees these documents (Bipsync did not return them to its
    token): its sightings go, and documents no other connection sees are marked deleted."""
    wanted = [bid for bid in ids if valid_id(bid)]
    if not wanted:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            unsight_statement(ResearchDocument),
            {
                "team": conn.team_id,
                "tenant": conn.tenant,
                "now": timezone.now(),
                "connection": conn.pk,
                "ids": ",".join(wanted),
            },
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0
