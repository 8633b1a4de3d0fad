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

from bipsync_partner.sync.models import ScanPage, SyncedRow, SyncRun

#: Columns the run supplies for every row of a page: field name -> statement parameter.
CONTEXT = {"connection": "connection", "team": "team", "tenant": "tenant"}
#: Columns the statement stamps: field name -> SQL (a row written now is live).
STAMPS = {"first_synced_at": "%(now)s", "changed_at": "%(now)s", "deleted_at": "NULL"}
#: The row's identity within the connection (its unique constraint).
KEY = ("connection", "bipsync_id")
#: Kept from a row's first insert on every later update.
KEPT = frozenset({"first_synced_at"})

SyncedModel = type[SyncedRow]


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _table(model: type[models.Model]) -> str:
    return _q(model._meta.db_table)


def _column(model: type[models.Model], name: str) -> str:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field), name
    return _q(field.column)


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
    """The name of the unique constraint on :data:`KEY` (a first scan's plain insert meeting
    it means the scan met a document twice)."""
    for constraint in model._meta.constraints:
        if isinstance(constraint, models.UniqueConstraint) and tuple(constraint.fields) == KEY:
            return str(constraint.name)
    raise LookupError(f"{model.__name__} has no unique constraint on {KEY}")


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
    record = ", ".join(f"{_q(f.attname)} {f.db_type(connection)}" for f in item_fields(model))
    sql = (
        f"up AS (\n    INSERT INTO {_table(model)} ({', '.join(_q(f.column) for f in fields)})\n"
        f"    SELECT {', '.join(values)}\n"
        f"    FROM jsonb_to_recordset(%(rows)s::jsonb) AS r({record})\n"
    )
    if upsert:
        updated = [f for f in fields if f.name not in KEY and f.name not in KEPT]
        assignments = ", ".join(f"{_q(f.column)} = EXCLUDED.{_q(f.column)}" for f in updated)
        key = ", ".join(_column(model, name) for name in KEY)
        sql += f"    ON CONFLICT ({key}) DO UPDATE SET {assignments}\n"
    return sql + (
        "    RETURNING (xmax = 0) AS inserted\n),\n"
        "counts AS (\n"
        "    SELECT count(*) FILTER (WHERE inserted) AS created,\n"
        "           count(*) FILTER (WHERE NOT inserted) AS updated\n"
        "    FROM up\n),\n"
    )


@functools.cache
def _scan_page() -> str:
    columns = ", ".join(_column(ScanPage, name) for name in ("run", "seq", "offset", "ids"))
    return (
        f"page AS (\n    INSERT INTO {_table(ScanPage)} ({columns})\n"
        "    VALUES (%(run)s, %(seq)s, %(offset)s, string_to_array(%(ids)s, ',')::varchar(24)[])\n"
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
        f"    FROM counts\n    WHERE {_column(SyncRun, 'id')} = %(run)s\n)\n"
        "SELECT created, updated FROM counts\n"
    )


@functools.cache
def page_statement(model: SyncedModel, *, upsert: bool, record_ids: bool) -> str:
    """The page's one statement: its rows (``upsert`` False: a plain insert, which fails on a
    row already stored), its ids when ``record_ids``, and the run's checkpoint.

    Parameters: ``connection``, ``team``, ``tenant``, ``now``, ``rows`` (a JSON array of objects
    keyed by :func:`item_columns`), ``run``, ``seq``, ``offset``, ``ids``, ``seen``, ``passed``,
    ``total``, ``next_offset``, ``anchor``, ``unstable``."""
    ids = _scan_page() if record_ids else ""
    return "WITH " + _insert(model, upsert=upsert) + ids + _checkpoint()


@functools.cache
def known_statement(model: SyncedModel) -> str:
    """Stored hash and deletedness of the page's ids (``connection``, ``ids`` comma-joined)."""
    bid, digest, deleted = (
        _column(model, name) for name in ("bipsync_id", "content_hash", "deleted_at")
    )
    return (
        f"SELECT {bid}, {digest}, {deleted} IS NOT NULL FROM {_table(model)} "
        f"WHERE {_column(model, 'connection')} = %(connection)s "
        f"AND {bid} = ANY(string_to_array(%(ids)s, ','))"
    )


@functools.cache
def mark_deleted_statement(model: SyncedModel) -> str:
    """Mark deleted the connection's live rows whose id is not in ``sync_seen_ids`` (a temporary
    table of the ids the run's scans saw; parameters ``now``, ``connection``)."""
    bid, deleted, changed = (
        _column(model, name) for name in ("bipsync_id", "deleted_at", "changed_at")
    )
    return (
        f"UPDATE {_table(model)} AS d SET {deleted} = %(now)s, {changed} = %(now)s "
        f"WHERE d.{_column(model, 'connection')} = %(connection)s AND d.{deleted} IS NULL "
        f"AND NOT EXISTS (SELECT 1 FROM sync_seen_ids AS s WHERE s.bipsync_id = d.{bid})"
    )


@functools.cache
def analyze_statement(model: SyncedModel, names: tuple[str, ...]) -> str:
    """``ANALYZE`` of the table, for the named fields' columns only."""
    return f"ANALYZE {_table(model)} ({', '.join(_column(model, name) for name in names)})"
