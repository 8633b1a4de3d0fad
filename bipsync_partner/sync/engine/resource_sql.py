"""The statements of a resource's scan (bipsync_partner/sync/resources.py), written once per
model from its metadata, as :mod:`.sql` writes research's: the page's upsert, the stored hashes
of a page's ids, and the deletion of what a complete scan did not see."""

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
from bipsync_partner.sync.models import TenantRow

#: Columns the run supplies for the whole page: field name -> statement parameter.
CONTEXT = {"team": "team", "tenant": "tenant", "source_connection": "connection"}
#: Columns the statement stamps (a row written now is live).
STAMPS = {"first_synced_at": "%(now)s", "changed_at": "%(now)s", "deleted_at": "NULL"}
KEY = ("team", "tenant", "bipsync_id")
#: Temporary table of the ids a resource's scan saw (dropped at commit).
SEEN_TABLE = "resource_seen_ids"


def _fields(model: type[TenantRow]) -> list[models.Field[Any, Any]]:
    return [f for f in model._meta.concrete_fields if not f.primary_key]


@functools.cache
def item_fields(model: type[TenantRow]) -> tuple[models.Field[Any, Any], ...]:
    """The fields each JSON row of a page carries (keyed by attname)."""
    return tuple(f for f in _fields(model) if f.name not in CONTEXT and f.name not in STAMPS)


def _same_tenant(model: type[TenantRow], alias: str) -> str:
    return (
        f"{alias}.{_column(model, 'team')} = %(team)s "
        f"AND {alias}.{_column(model, 'tenant')} = %(tenant)s"
    )


@functools.cache
def upsert_statement(model: type[TenantRow]) -> str:
    """Insert the page's rows (``rows``: a JSON array), or update a stored one whose hash
    differs or that was marked deleted; returns (created, updated). Parameters ``rows``,
    ``team``, ``tenant``, ``connection``, ``now``."""
    fields = _fields(model)
    values = []
    for f in fields:
        if f.name in CONTEXT:
            values.append(f"%({CONTEXT[f.name]})s")
        elif f.name in STAMPS:
            values.append(STAMPS[f.name])
        else:
            values.append(f"r.{_q(f.attname)}")
    record = ", ".join(f"{_q(f.attname)} {f.db_type(connection)}" for f in item_fields(model))
    updated = ", ".join(
        f"{_q(f.column)} = EXCLUDED.{_q(f.column)}"
        for f in fields
        if f.name not in KEY and f.name != "first_synced_at"
    )
    digest, deleted = _column(model, "content_hash"), _column(model, "deleted_at")
    return (
        f"WITH r AS (SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS r({record})),\n"
        f"up AS (\n    INSERT INTO {_table(model)} AS d ({', '.join(_q(f.column) for f in fields)})\n"
        f"    SELECT {', '.join(values)} FROM r\n"
        f"    ON CONFLICT ({', '.join(_column(model, n) for n in KEY)}) DO UPDATE SET {updated}\n"
        f"    WHERE d.{digest} IS DISTINCT FROM EXCLUDED.{digest} OR d.{deleted} IS NOT NULL\n"
        "    RETURNING (xmax = 0) AS inserted\n)\n"
        "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up"
    )


@functools.cache
def known_statement(model: type[TenantRow]) -> str:
    """Stored hash and deletedness of the page's ids (``team``, ``tenant``, ``ids``
    comma-joined)."""
    bid, digest, deleted = (_column(model, n) for n in ("bipsync_id", "content_hash", "deleted_at"))
    return (
        f"SELECT d.{bid}, d.{digest}, d.{deleted} IS NOT NULL FROM {_table(model)} AS d "
        f"WHERE {_same_tenant(model, 'd')} AND d.{bid} = ANY(string_to_array(%(ids)s, ','))"
    )


def _deletable(model: type[TenantRow]) -> str:
    """The live rows of the tenant the scan did not see that are this connection's to delete:
    written by it, or by none (or by a connection since disconnected). A row another live
    connection wrote is that connection's scan's to remove."""
    source = _column(model, "source_connection")
    status = _column(Connection, "status")
    return (
        f"FROM {_table(model)} AS d WHERE {_same_tenant(model, 'd')}"
        f" AND d.{_column(model, 'deleted_at')} IS NULL"
        f" AND (d.{source} = %(connection)s OR d.{source} IS NULL OR NOT EXISTS ("
        f"SELECT 1 FROM {_table(Connection)} AS c WHERE c.{_column(Connection, 'id')} = d.{source}"
        f" AND c.{status} <> 'disconnected'))"
    )


@functools.cache
def stored_statement(model: type[TenantRow]) -> str:
    """How many live rows are the connection's to delete, and how many of them the scan did not
    see (needs :data:`SEEN_TABLE`)."""
    return (
        "SELECT count(*), count(*) FILTER (WHERE NOT EXISTS ("
        f"SELECT 1 FROM {SEEN_TABLE} AS x WHERE x.bipsync_id = d.{_column(model, 'bipsync_id')})) "
        + _deletable(model)
    )


@functools.cache
def mark_deleted_statement(model: type[TenantRow]) -> str:
    """Mark deleted the rows of :func:`_deletable` that are not in :data:`SEEN_TABLE`."""
    deleted, changed = _column(model, "deleted_at"), _column(model, "changed_at")
    return (
        f"UPDATE {_table(model)} AS t SET {deleted} = %(now)s, {changed} = %(now)s "
        f"WHERE t.id IN (SELECT d.id {_deletable(model)} AND NOT EXISTS ("
        f"SELECT 1 FROM {SEEN_TABLE} AS x WHERE x.bipsync_id = d.{_column(model, 'bipsync_id')}))"
    )
