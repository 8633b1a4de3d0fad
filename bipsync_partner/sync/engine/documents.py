"""Some documents of one connection outside a full scan: what a hint names, what the poll for
new research finds. They go through the page's own statement (the same hashes, history,
sightings and "an older view never overwrites a newer one" rule), without a run: no scan ids, no
checkpoint, no deletion detection, which stays the full scan's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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


def known_live(conn: Connection, ids: Iterable[str]) -> set[str]:
    """Of ``ids``, those stored live that the connection already sees."""
    wanted = [bid for bid in ids if valid_id(bid)]
    if not wanted:
        return set()
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            known_statement(ResearchDocument),
            {
                "team": conn.team_id,
                "tenant": conn.tenant,
                "connection": conn.pk,
                "ids": ",".join(wanted),
            },
        )
        return {bid for bid, _digest, gone, sighted in cursor if sighted and not gone}


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
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            known_statement(ResearchDocument),
            {
                "team": conn.team_id,
                "tenant": conn.tenant,
                "connection": conn.pk,
                "ids": ",".join(hashed),
            },
        )
        known = {bid: (digest, gone, sighted) for bid, digest, gone, sighted in cursor}
    rows, sight, to_sight = [], [], []
    for bid, (digest, item) in hashed.items():
        stored = known.get(bid)
        if stored is None or not stored[2]:
            sight.append(bid)
            if stored is not None:
                to_sight.append(bid)
        if stored is not None and stored[:2] == (digest, False):
            continue
        parsed = parse(ResearchItem, item, near=0)
        if parsed is not None:
            rows.append(document_row(parsed, digest))
            if stored is None:
                to_sight.append(bid)
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            documents_statement(ResearchDocument),
            {
                "connection": conn.pk,
                "team": conn.team_id,
                "tenant": conn.tenant,
                "rows": json_text(rows),
                "sight": ",".join(sight),
                "now": timezone.now(),
            },
        )
        row = cursor.fetchone()
    created, updated, sighted, held = (int(value) for value in row) if row else (0, 0, 0, 0)
    if not held:
        raise ConnectionGone(f"Connection {conn.pk} was deleted before its documents were stored.")
    if sighted < len(to_sight) and again:
        retried = store_documents(conn, [hashed[bid][1] for bid in to_sight], again=False)
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
