"""The token refresh's three statements, written once instead of built by the ORM each time.

The proactive sweep refreshes hundreds of connections a second, and for each one Django spent
about as much CPU building its queries (compiling the lookup, the ``FOR UPDATE``, the update and
the event's insert) as the rest of the refresh, on the same cores as everything else
(bench/README.md, "Refresh sweep"). The statements here are generated from the models' own field
definitions on first use and then reused; the values still go through each field's ``pre_save``
and ``get_db_prep_save`` exactly as ``save()`` does, so the encrypting field seals every token
(no caller can forget), ``auto_now`` stamps ``updated``, and rows are loaded through
``from_db``, which binds each sealed value to its row.

Only what the token service needs: lock and read one connection, write named fields of it,
append one event.
"""

# The statements are assembled from the models' own table and column names (quoted by the
# backend), never from input; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from django.db import connection, models

from bipsync_partner.connections.models import Connection, ConnectionEvent
from bipsync_partner.sqlnames import quoted as _quoted


@functools.cache
def _select_sql(skip_locked: bool) -> str:
    columns = ", ".join(_quoted(f.column) for f in Connection._meta.concrete_fields)
    table = _quoted(Connection._meta.db_table)
    pk = _quoted(Connection._meta.pk.column)
    wait = " SKIP LOCKED" if skip_locked else ""
    return f"SELECT {columns} FROM {table} WHERE {pk} = %s FOR UPDATE{wait}"


@functools.cache
def _converters() -> tuple[tuple[int, Any], ...]:
    # The fields that turn a database value into a Python one (the encrypting field's sealed
    # value); psycopg already returns UUIDs, datetimes and integers as Django expects them.
    return tuple(
        (index, field.from_db_value)
        for index, field in enumerate(Connection._meta.concrete_fields)
        if hasattr(field, "from_db_value")
    )


@functools.cache
def _attnames() -> tuple[str, ...]:
    return tuple(f.attname for f in Connection._meta.concrete_fields)


def lock_connection(pk: UUID | str, *, skip_locked: bool) -> Connection | None:
    """``SELECT ... FOR UPDATE [SKIP LOCKED]`` of one connection, inside the caller's
    transaction; None if there is no such row (or, with ``skip_locked``, someone holds it)."""
    with connection.cursor() as cursor:
        cursor.execute(_select_sql(skip_locked), [str(pk)])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for index, convert in _converters():
        values[index] = convert(values[index], None, connection)
    return Connection.from_db(connection.alias, _attnames(), values)


@functools.cache
def _update_sql(names: tuple[str, ...]) -> tuple[str, tuple[models.Field[Any, Any], ...]]:
    fields: list[models.Field[Any, Any]] = []
    for name in names:
        field = Connection._meta.get_field(name)
        assert isinstance(field, models.Field), name
        fields.append(field)
    assignments = ", ".join(f"{_quoted(field.column)} = %s" for field in fields)
    table = _quoted(Connection._meta.db_table)
    pk = _quoted(Connection._meta.pk.column)
    return f"UPDATE {table} SET {assignments} WHERE {pk} = %s", tuple(fields)


def update_connection(conn: Connection, field_names: Sequence[str]) -> None:
    """What ``conn.save(update_fields=field_names)`` writes (``updated`` is always added)."""
    names = tuple(dict.fromkeys([*field_names, "updated"]))
    sql, fields = _update_sql(names)
    values = [f.get_db_prep_save(f.pre_save(conn, False), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, conn.pk])
        if cursor.rowcount != 1:
            raise Connection.DoesNotExist(f"Connection {conn.pk} is gone; nothing was written.")


@functools.cache
def _event_insert() -> tuple[str, tuple[models.Field[Any, Any], ...]]:
    fields = tuple(f for f in ConnectionEvent._meta.concrete_fields if not f.primary_key)
    columns = ", ".join(_quoted(f.column) for f in fields)
    marks = ", ".join("%s" for _ in fields)
    table = _quoted(ConnectionEvent._meta.db_table)
    return f"INSERT INTO {table} ({columns}) VALUES ({marks})", fields


def append_event(conn: Connection, kind: str, message: str) -> None:
    """What ``conn.record(kind, None, message)`` stores (the event's id is not needed)."""
    event = ConnectionEvent(connection=conn, kind=kind, actor=None, message=message)
    sql, fields = _event_insert()
    values = [f.get_db_prep_save(f.pre_save(event, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
