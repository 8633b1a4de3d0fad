"""The page statement and its neighbours, written once from the models' own metadata.

One statement per page, atomic on its own: the new and changed rows (one JSON parameter that
Postgres expands: building a 100-row, 15-column INSERT literal by literal on the client cost more
than the database work), the page's ids (one comma-joined string of validated 24-hex ids; not
during a first scan, see SyncRun.first_scan) and the run's checkpoint and counts. RETURNING
(xmax = 0) tells an insert from an update.

Table and column names and the JSON rows' types come from ``Model._meta`` (as
:mod:`bipsync_partner.connections.fastdb` does for the token service), so a new column of a
synced table is one field on the model and one key of its row, and a second paged table is a
second model: no SQL is copied. Each statement is built once per model and then reused.

The columns of a synced row (:class:`~bipsync_partner.sync.models.SyncedRow`) fall in three
groups: those the run supplies for the whole page (:data:`CONTEXT`), those the statement stamps
(:data:`STAMPS`), and the rest, which come from the item: the keys of each JSON row.
"""

# The statements are assembled from the models' own table and column names (quoted by the
# backend), never from input; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import functools
from typing import Any

from django.db import connection, models

from bipsync_partner.connections.models import Connection
from bipsync_partner.sqlnames import column as _column
from bipsync_partner.sqlnames import quoted as _q
from bipsync_partner.sqlnames import table as _table
from bipsync_partner.sync.models import (
    DocumentChange,
    DocumentSighting,
    ResearchDocument,
    ScanPage,
    SyncedRow,
    SyncRun,
)

#: Columns the run supplies for every row of a page: field name -> statement parameter.
CONTEXT = {"team": "team", "tenant": "tenant", "source_connection": "connection"}
#: Columns the statement stamps: field name -> SQL (a row written now is live).
STAMPS = {"first_synced_at": "%(now)s", "changed_at": "%(now)s", "deleted_at": "NULL"}
#: The row's identity within the team (its unique constraint).
KEY = ("team", "tenant", "bipsync_id")
#: Kept from a row's first insert on every later update.
KEPT = frozenset({"first_synced_at"})

SyncedModel = type[SyncedRow] | type[ResearchDocument]

#: What the history records of an updated row: label -> column (before and after).
HISTORY_COLUMNS = {
    "title": "title",
    "content type": "content_type_bid",
    "author": "author_bid",
    "author name": "author_name",
    "created": "bipsync_created",
    "modified": "bipsync_modified",
}


def _fields(model: SyncedModel) -> list[models.Field[Any, Any]]:
    return [f for f in model._meta.concrete_fields if not f.primary_key]


@functools.cache
def item_fields(model: SyncedModel) -> tuple[models.Field[Any, Any], ...]:
    """The fields whose values come from the item: the keys (attnames) of each JSON row."""
    return tuple(f for f in _fields(model) if f.name not in CONTEXT and f.name not in STAMPS)


def item_columns(model: SyncedModel) -> tuple[str, ...]:
    return tuple(f.attname for f in item_fields(model))


@functools.cache
def key_constraint(model: SyncedModel) -> str:
    """The name of the unique constraint on :data:`KEY` (a plain insert meeting it means the
    scan met a document twice, or another connection stored it meanwhile)."""
    for constraint in model._meta.constraints:
        if isinstance(constraint, models.UniqueConstraint) and tuple(constraint.fields) == KEY:
            return str(constraint.name)
    raise LookupError(f"{model.__name__} has no unique constraint on {KEY}")


def _newer(model: SyncedModel) -> str:
    """When a view replaces the stored row (the upsert's ``WHERE``): the row was deleted (the
    document came back), or the view's ``modified`` is later, or it is as recent and it is the
    view of the connection that wrote the row (or of none: its writer was disconnected). So an
    older view from another connection never undoes a newer edit, and two connections that
    see one document differently at the same ``modified`` do not overwrite each other on every
    sync. A view with the stored hash changes nothing, unless the row had been marked deleted
    (a first scan that meets its documents again, below, sends every row it read)."""
    deleted, modified, source, digest = (
        _column(model, name)
        for name in ("deleted_at", "bipsync_modified", "source_connection", "content_hash")
    )
    return (
        f"d.{deleted} IS NOT NULL"
        f" OR (EXCLUDED.{digest} <> d.{digest} AND ("
        f"EXCLUDED.{modified} > d.{modified}"
        f" OR (d.{modified} IS NULL AND EXCLUDED.{modified} IS NOT NULL)"
        f" OR (EXCLUDED.{modified} IS NOT DISTINCT FROM d.{modified}"
        f" AND (d.{source} IS NULL OR d.{source} = EXCLUDED.{source}))))"
    )


def _record(model: SyncedModel) -> str:
    return ", ".join(f"{_q(f.attname)} {f.db_type(connection)}" for f in item_fields(model))


def _same_document(model: SyncedModel, alias: str) -> str:
    """The team's rows of the tenant (the leading columns of the unique key)."""
    return (
        f"{alias}.{_column(model, 'team')} = %(team)s "
        f"AND {alias}.{_column(model, 'tenant')} = %(tenant)s"
    )


@functools.cache
def _holder() -> str:
    """The connection's row, locked ``FOR KEY SHARE`` once for the page: while the page's
    transaction is open, the connection cannot be deleted (a delete locks it ``FOR UPDATE``
    first, see :mod:`bipsync_partner.sync.receivers`), and a page that comes after a delete finds
    no row and writes nothing. This is the check the sightings' foreign key made on every row,
    made once per statement (a row lock waits for a concurrent delete and then skips the
    deleted row, under the statement's snapshot or not)."""
    return (
        f"holder AS MATERIALIZED (\n    SELECT {_column(Connection, 'id')} AS id"
        f" FROM {_table(Connection)}\n    WHERE {_column(Connection, 'id')} = %(connection)s"
        " FOR KEY SHARE\n),\n"
    )


@functools.cache
def _insert(model: SyncedModel, *, upsert: bool) -> str:
    fields = _fields(model)
    values = []
    for field in fields:
        if field.name in CONTEXT:
            values.append(f"%({CONTEXT[field.name]})s")
        elif field.name in STAMPS:
            values.append(STAMPS[field.name])
        else:
            values.append(f"r.{_q(field.attname)}")
    sql = (
        f"r AS (\n    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS r({_record(model)})\n"
        "    WHERE EXISTS (SELECT FROM holder)\n),\n"
    )
    if upsert:
        # The stored values of the rows about to be written: every part of one statement reads
        # the same snapshot, so this is the row as it was before the upsert below.
        history = ", ".join(_column(model, c) for c in (*HISTORY_COLUMNS.values(), "lookup_fields"))
        sql += (
            f"before AS (\n    SELECT d.id, d.{_column(model, 'deleted_at')} AS gone, {history}\n"
            f"    FROM {_table(model)} AS d\n"
            f"    WHERE {_same_document(model, 'd')}\n"
            f"      AND d.{_column(model, 'bipsync_id')} IN (SELECT r.bipsync_id FROM r)\n),\n"
        )
    returned = ", ".join(_column(model, c) for c in (*HISTORY_COLUMNS.values(), "lookup_fields"))
    sql += (
        f"up AS (\n    INSERT INTO {_table(model)} AS d ({', '.join(_q(f.column) for f in fields)})\n"
        f"    SELECT {', '.join(values)}\n    FROM r\n"
    )
    if upsert:
        updated = [f for f in fields if f.name not in KEY and f.name not in KEPT]
        assignments = ", ".join(f"{_q(f.column)} = EXCLUDED.{_q(f.column)}" for f in updated)
        key = ", ".join(_column(model, name) for name in KEY)
        sql += f"    ON CONFLICT ({key}) DO UPDATE SET {assignments}\n    WHERE {_newer(model)}\n"
    return sql + f"    RETURNING d.id, (xmax = 0) AS inserted, {returned}\n),\n"


def _diff(model: SyncedModel) -> str:
    """What changed between ``b`` (before) and ``u`` (after), as a JSON object: each changed
    column as ``[before, after]``, the changed keys of Bipsync's fields the same way, and
    ``restored`` when the row had been marked deleted."""
    pairs = []
    for label, name in HISTORY_COLUMNS.items():
        col = _column(model, name)
        pairs.append(
            f"'{label}', CASE WHEN b.{col} IS DISTINCT FROM u.{col} "
            f"THEN jsonb_build_array(b.{col}, u.{col}) END"
        )
    fields = _column(model, "lookup_fields")
    pairs.append(
        "'fields', (SELECT jsonb_object_agg(coalesce(o.key, n.key), "
        "jsonb_build_array(o.value, n.value)) "
        f"FROM jsonb_each(b.{fields}) AS o FULL JOIN jsonb_each(u.{fields}) AS n "
        "ON o.key = n.key WHERE o.value IS DISTINCT FROM n.value)"
    )
    pairs.append("'restored', CASE WHEN b.gone IS NOT NULL THEN true END")
    return f"jsonb_strip_nulls(jsonb_build_object({', '.join(pairs)}))"


@functools.cache
def _history(model: SyncedModel) -> str:
    columns = ", ".join(
        _column(DocumentChange, name) for name in ("document", "connection", "seen_at", "changes")
    )
    return (
        f"history AS (\n    INSERT INTO {_table(DocumentChange)} ({columns})\n"
        "    SELECT id, %(connection)s, %(now)s, diff FROM (\n"
        f"        SELECT u.id, {_diff(model)} AS diff\n"
        "        FROM up AS u JOIN before AS b ON b.id = u.id WHERE NOT u.inserted\n"
        "    ) AS changed WHERE diff <> '{}'::jsonb\n),\n"
    )


@functools.cache
def _sightings(model: SyncedModel, *, upsert: bool) -> str:
    """The connection's sightings of the page's documents it did not see before: those the
    upsert wrote, and the stored ones named by ``sight`` (comma-joined ids). A plain insert
    (nothing of the tenant was stored) sights what it inserted, nothing else.

    The sightings' foreign keys are not checked by the database (a check per row was a sixth
    of a first sync's time), so the statement itself never points a sighting at a row that is
    gone: the connection's is the locked ``holder``, and a stored document is locked ``FOR KEY
    SHARE`` as it is looked up (in id order, as a disconnect locks them), which waits for a
    disconnect removing it and then skips it. ``sighted`` then falls short of what the caller
    asked, and the caller stores the document again
    (:func:`~bipsync_partner.sync.engine.pages.resight`)."""
    columns = ", ".join(
        _column(DocumentSighting, name) for name in ("document", "connection", "first_seen_at")
    )
    source = "SELECT id FROM up"
    if upsert:
        source += (
            f"\n        UNION SELECT id FROM (SELECT d.id FROM {_table(model)} AS d"
            f" WHERE {_same_document(model, 'd')}"
            f" AND d.{_column(model, 'bipsync_id')} = ANY(string_to_array(%(sight)s, ','))"
            " ORDER BY d.id FOR KEY SHARE OF d) AS stored"
        )
    conflict = "    ON CONFLICT DO NOTHING\n" if upsert else ""
    return (
        f"sight AS (\n    INSERT INTO {_table(DocumentSighting)} ({columns})\n"
        f"    SELECT seen.id, holder.id, %(now)s FROM (\n        {source}\n    ) AS seen"
        " CROSS JOIN holder\n"
        f"{conflict}    RETURNING 1\n),\n"
        "counts AS (\n"
        "    SELECT (SELECT count(*) FROM up WHERE inserted) AS created,\n"
        "           (SELECT count(*) FROM up WHERE NOT inserted) AS updated,\n"
        "           (SELECT count(*) FROM sight) AS sighted,\n"
        "           (SELECT count(*) FROM holder) AS held\n),\n"
    )


@functools.cache
def _scan_page() -> str:
    columns = ", ".join(_column(ScanPage, name) for name in ("run", "seq", "offset", "ids"))
    return (
        f"page AS (\n    INSERT INTO {_table(ScanPage)} ({columns})\n"
        "    SELECT %(run)s, %(seq)s, %(offset)s, string_to_array(%(ids)s, ',')::varchar(24)[]\n"
        "    WHERE EXISTS (SELECT FROM holder)\n"
        "),\n"
    )


#: The run's checkpoint and counts: column -> new value (``counts`` is the page's upsert).
_CHECKPOINT = {
    "seen_count": "{} + %(seen)s",
    "created_count": "{} + counts.created",
    "updated_count": "{} + counts.updated",
    "unchanged_count": "{} + %(seen)s - counts.created - counts.updated",
    "passed_count": "{} + %(passed)s",
    "pages": "%(seq)s",
    "total_reported": "%(total)s",
    "next_offset": "%(next_offset)s",
    "anchor_id": "%(anchor)s",
    "scan_unstable": "%(unstable)s",
    "heartbeat_at": "%(now)s",
}


@functools.cache
def _checkpoint() -> str:
    assignments = ",\n        ".join(
        f"{_column(SyncRun, name)} = {value.format(_column(SyncRun, name))}"
        for name, value in _CHECKPOINT.items()
    )
    return (
        f"checkpoint AS (\n    UPDATE {_table(SyncRun)}\n    SET {assignments}\n"
        f"    FROM counts\n    WHERE {_column(SyncRun, 'id')} = %(run)s AND counts.held > 0\n)\n"
        "SELECT created, updated, sighted, held FROM counts\n"
    )


@functools.cache
def page_statement(model: SyncedModel, *, upsert: bool, record_ids: bool) -> str:
    """The page's one statement: its rows (``upsert`` False: a plain insert, which fails on a
    row already stored; True: an upsert that keeps a newer stored view, see :func:`_newer`, and
    records what it changed in the document's history), the connection's new sightings, its
    ids when ``record_ids``, and the run's checkpoint.

    Parameters: ``connection``, ``team``, ``tenant``, ``now``, ``rows`` (a JSON array of objects
    keyed by :func:`item_columns`), ``sight`` (comma-joined ids of stored documents the
    connection now sees), ``run``, ``seq``, ``offset``, ``ids``, ``seen``, ``passed``,
    ``total``, ``next_offset``, ``anchor``, ``unstable``. Returns (created, updated, sighted,
    held); ``held`` 0 means the connection is gone and nothing was written.
    """
    ids = _scan_page() if record_ids else ""
    history = _history(model) if upsert else ""
    return (
        "WITH "
        + _holder()
        + _insert(model, upsert=upsert)
        + history
        + _sightings(model, upsert=upsert)
        + ids
        + _checkpoint()
    )


@functools.cache
def known_statement(model: SyncedModel) -> str:
    """Stored hash, deletedness and whether the connection sees it, of the page's ids
    (``team``, ``tenant``, ``connection``, ``ids`` comma-joined).

    The sighting is asked per row (a scalar subquery in the select list, at most one row by the
    primary key: a probe of it, document then connection), not joined nor as ``EXISTS`` (which
    Postgres may hash): while a connection's first scan fills
    its sightings the statistics still say it has none, and a join then read all of the
    connection's sightings for every page (quadratic: a second connection's first sync of
    30,000 documents took 61 s instead of 8)."""
    bid, digest, deleted = (
        _column(model, name) for name in ("bipsync_id", "content_hash", "deleted_at")
    )
    sighting = _table(DocumentSighting)
    document, conn = (_column(DocumentSighting, name) for name in ("document", "connection"))
    return (
        f"SELECT d.{bid}, d.{digest}, d.{deleted} IS NOT NULL, "
        f"(SELECT s.{document} FROM {sighting} AS s "
        f"WHERE s.{document} = d.id AND s.{conn} = %(connection)s) IS NOT NULL "
        f"FROM {_table(model)} AS d "
        f"WHERE {_same_document(model, 'd')} "
        f"AND d.{bid} = ANY(string_to_array(%(ids)s, ','))"
    )


@functools.cache
def mark_deleted_statement(model: SyncedModel) -> str:
    """Remove the connection's sightings of documents whose id is not in ``sync_seen_ids`` (a
    temporary table of the ids the run's scans saw), and mark deleted, with a line of history,
    the documents no other connection sees; returns how many sightings went (parameters
    ``now``, ``connection``)."""
    bid, deleted, changed = (
        _column(model, name) for name in ("bipsync_id", "deleted_at", "changed_at")
    )
    sighting = _table(DocumentSighting)
    document, conn = (_column(DocumentSighting, name) for name in ("document", "connection"))
    columns = ", ".join(
        _column(DocumentChange, name) for name in ("document", "connection", "seen_at", "changes")
    )
    return (
        f"WITH gone AS (\n    DELETE FROM {sighting} AS s USING {_table(model)} AS d\n"
        f"    WHERE s.{conn} = %(connection)s AND d.id = s.{document}\n"
        f"      AND NOT EXISTS (SELECT 1 FROM sync_seen_ids AS x WHERE x.bipsync_id = d.{bid})\n"
        f"    RETURNING s.{document} AS id\n),\n"
        f"marked AS (\n    UPDATE {_table(model)} AS d SET {deleted} = %(now)s, {changed} = %(now)s\n"
        f"    FROM gone WHERE d.id = gone.id AND d.{deleted} IS NULL\n"
        f"      AND NOT EXISTS (SELECT 1 FROM {sighting} AS o\n"
        f"                      WHERE o.{document} = d.id AND o.{conn} <> %(connection)s)\n"
        "    RETURNING d.id\n),\n"
        f"history AS (\n    INSERT INTO {_table(DocumentChange)} ({columns})\n"
        "    SELECT id, %(connection)s, %(now)s, '{\"deleted\": true}'::jsonb FROM marked\n)\n"
        "SELECT count(*) FROM gone"
    )


@functools.cache
def lock_sighted_statement(model: SyncedModel) -> str:
    """Lock ``FOR UPDATE``, in id order, every document the connection sees (parameter
    ``connection``): what :func:`forget_statement` may remove, held against pages sighting
    them meanwhile."""
    sighting = _table(DocumentSighting)
    document, conn = (_column(DocumentSighting, name) for name in ("document", "connection"))
    return (
        f"SELECT d.id FROM {_table(model)} AS d\n"
        f"WHERE d.id IN (SELECT s.{document} FROM {sighting} AS s WHERE s.{conn} = %(connection)s)\n"
        "ORDER BY d.id FOR UPDATE OF d"
    )


@functools.cache
def forget_statement(model: SyncedModel) -> str:
    """Remove a connection's sightings, and the documents (with their history) that no other
    connection sees; the connection is no longer the writer of the documents left. Returns how
    many documents went (parameter ``connection``)."""
    sighting = _table(DocumentSighting)
    document, conn = (_column(DocumentSighting, name) for name in ("document", "connection"))
    source = _column(model, "source_connection")
    return (
        f"WITH gone AS (\n    DELETE FROM {sighting} WHERE {conn} = %(connection)s\n"
        f"    RETURNING {document} AS id\n),\n"
        "orphans AS (\n    SELECT g.id FROM gone AS g\n"
        f"    WHERE NOT EXISTS (SELECT 1 FROM {sighting} AS o\n"
        f"                      WHERE o.{document} = g.id AND o.{conn} <> %(connection)s)\n),\n"
        f"history AS (\n    DELETE FROM {_table(DocumentChange)}\n"
        f"    WHERE {_column(DocumentChange, 'document')} IN (SELECT id FROM orphans)\n),\n"
        f"removed AS (\n    DELETE FROM {_table(model)} WHERE id IN (SELECT id FROM orphans)\n"
        "    RETURNING id\n),\n"
        f"unsourced AS (\n    UPDATE {_table(model)} SET {source} = NULL\n"
        f"    WHERE id IN (SELECT id FROM gone EXCEPT SELECT id FROM orphans)\n"
        f"      AND {source} = %(connection)s\n)\n"
        "SELECT count(*) FROM removed"
    )


@functools.cache
def analyze_statement(model: type[models.Model], names: tuple[str, ...]) -> str:
    """``ANALYZE`` of the table, for the named fields' columns only."""
    return f"ANALYZE {_table(model)} ({', '.join(_column(model, name) for name in names)})"


@functools.cache
def documents_statement(model: SyncedModel) -> str:
    """Some documents outside a scan (a hint, the poll for new research): the page statement's
    upsert, history and sightings, without scan ids or a run's checkpoint. Parameters
    ``connection``, ``team``, ``tenant``, ``now``, ``rows``, ``sight``; returns (created,
    updated, sighted, held)."""
    body = (
        _holder() + _insert(model, upsert=True) + _history(model) + _sightings(model, upsert=True)
    )
    # The last common table expression (counts) ends with the separator the checkpoint follows.
    return (
        "WITH "
        + body.rstrip().removesuffix(",")
        + "\nSELECT created, updated, sighted, held FROM counts"
    )


@functools.cache
def unsight_statement(model: SyncedModel) -> str:
    """The connection no longer sees the documents named by ``ids`` (comma-joined): its
    sightings go, and those no other connection sees are marked deleted with a line of history,
    as :func:`mark_deleted_statement` does after a scan. Returns how many sightings went
    (parameters ``team``, ``tenant``, ``now``, ``connection``, ``ids``)."""
    bid, deleted, changed = (
        _column(model, name) for name in ("bipsync_id", "deleted_at", "changed_at")
    )
    sighting = _table(DocumentSighting)
    document, conn = (_column(DocumentSighting, name) for name in ("document", "connection"))
    columns = ", ".join(
        _column(DocumentChange, name) for name in ("document", "connection", "seen_at", "changes")
    )
    return (
        f"WITH gone AS (\n    DELETE FROM {sighting} AS s USING {_table(model)} AS d\n"
        f"    WHERE s.{conn} = %(connection)s AND d.id = s.{document}\n"
        f"      AND {_same_document(model, 'd')}\n"
        f"      AND d.{bid} = ANY(string_to_array(%(ids)s, ','))\n"
        f"    RETURNING s.{document} AS id\n),\n"
        f"marked AS (\n    UPDATE {_table(model)} AS d SET {deleted} = %(now)s, {changed} = %(now)s\n"
        f"    FROM gone WHERE d.id = gone.id AND d.{deleted} IS NULL\n"
        f"      AND NOT EXISTS (SELECT 1 FROM {sighting} AS o\n"
        f"                      WHERE o.{document} = d.id AND o.{conn} <> %(connection)s)\n"
        "    RETURNING d.id\n),\n"
        f"history AS (\n    INSERT INTO {_table(DocumentChange)} ({columns})\n"
        "    SELECT id, %(connection)s, %(now)s, '{\"deleted\": true}'::jsonb FROM marked\n)\n"
        "SELECT count(*) FROM gone"
    )
