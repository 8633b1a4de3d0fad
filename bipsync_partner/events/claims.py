"""Claiming a batch of one endpoint's due deliveries in one statement.

The deliverer claims a batch, POSTs each delivery, and marks the batch's outcomes. Built by the
ORM, a claim was five round trips (a transaction around ``SELECT ... FOR UPDATE SKIP LOCKED`` of
the ids, the ``UPDATE`` of their lease, then a ``SELECT`` of the rows with their events), and
building those queries and rows was most of what a delivery cost beyond its POST, on the cores
the POSTs need (bench/README.md, "Outbound events"). Here it is one statement, generated from the
models' own metadata on first use: ``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED)
RETURNING`` the claimed rows and their events, loaded through ``from_db`` (and each field's
``from_db_value``, so the event's JSON is decoded as the ORM decodes it).

Two workers never both get a delivery: the second skips the rows the first has locked, and
re-checks the lease on the rows it locks.
"""

# The statement is assembled from the models' own table and column names (quoted by the
# backend), never from input; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import functools
import uuid
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.db import connection, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.base import ModelState

from bipsync_partner.events.models import Delivery, Endpoint, Event
from bipsync_partner.sqlnames import column as _column
from bipsync_partner.sqlnames import quoted as _quoted

#: What the deliverer reads of a claimed delivery and its event; the rest of each row is left
#: deferred (the outcome is written by id, and a failure's notice reads only these).
_LOADED = {
    Delivery: ("id", "event", "endpoint", "attempts", "first_attempt_at", "next_attempt_at"),
    Event: ("id", "uid", "type", "payload"),
}


def _fields(model: type[models.Model]) -> tuple[models.Field[Any, Any], ...]:
    # In the model's own order: ``from_db`` pairs the values with the concrete fields in that
    # order, marking the ones left out as deferred.
    wanted = {model._meta.get_field(name) for name in _LOADED[model]}
    return tuple(field for field in model._meta.concrete_fields if field in wanted)


@functools.cache
def _claim_sql(first: bool) -> str:
    table = _quoted(Delivery._meta.db_table)
    events = _quoted(Event._meta.db_table)
    d = functools.partial(_column, Delivery)
    # ``first`` (the delivery a task was queued for) goes ahead of the rest when it is due.
    priority = f"(d.{d('id')} = %(first)s)" if first else "false"
    returned = ", ".join(
        [f"t.{_quoted(f.column)}" for f in _fields(Delivery)]
        + [f"e.{_quoted(f.column)}" for f in _fields(Event)]
    )
    return f"""
        WITH ahead AS (
            -- What the endpoint has due, up to a bound, locking nothing: the oldest first, so
            -- that the batches other runs hold (still pending) are among what it sees, and
            -- then what is free to claim.
            SELECT p.{d("claim_token")} AS claim, p.{d("lease_until")} AS held_until
            FROM {table} p
            WHERE p.{d("endpoint")} = %(endpoint)s AND p.{d("status")} = %(pending)s
              AND p.{d("next_attempt_at")} <= %(now)s
            ORDER BY p.{d("next_attempt_at")}, p.{d("id")}
            LIMIT %(look_ahead)s
        ), seen AS (
            SELECT count(*) FILTER (WHERE claim IS NULL OR held_until < %(now)s) AS free,
                   count(DISTINCT claim) FILTER (WHERE held_until >= %(now)s) AS others
            FROM ahead
        ), share AS (
            -- While other runs share the burst, a fair share of what is free to claim, so that
            -- the runs end together; never less than the smallest share. (Not of what they
            -- hold: runs that started together finish their batches together, so a held
            -- batch is often nearly done.)
            SELECT CASE WHEN others = 0 THEN %(size)s
                        ELSE least(%(size)s, greatest(%(smallest)s, ceil(free / (others + 1.0))))
                   END::integer AS size
            FROM seen
        ), due AS (
            SELECT d.{d("id")} AS id, d.{d("next_attempt_at")} AS at, {priority} AS named
            FROM {table} d
            WHERE d.{d("endpoint")} = %(endpoint)s AND d.{d("status")} = %(pending)s
              AND d.{d("next_attempt_at")} <= %(now)s
              AND (d.{d("lease_until")} IS NULL OR d.{d("lease_until")} < %(now)s)
            ORDER BY named DESC, d.{d("next_attempt_at")}, d.{d("id")}
            -- The batch asked for, not the share: a LIMIT the planner cannot read made it
            -- estimate a tenth of the endpoint's rows, and scan the whole table to update them.
            LIMIT %(size)s + 1
            FOR UPDATE SKIP LOCKED
        ), taken AS (
            SELECT id FROM due ORDER BY named DESC, at, id LIMIT (SELECT size FROM share)
        )
        UPDATE {table} AS t
        SET {d("claim_token")} = %(token)s, {d("lease_until")} = %(lease)s
        FROM {events} AS e
        -- By primary key whatever the planner estimates of the share (a join with a
        -- misestimated set of ids was a sequential scan of the table).
        WHERE t.{d("id")} = ANY(ARRAY(SELECT id FROM taken))
          AND e.{_column(Event, "id")} = t.{d("event")}
        RETURNING {returned}, (SELECT count(*) FROM due) > (SELECT size FROM share),
            (SELECT free FROM seen), (SELECT others FROM seen)
    """


@functools.cache
def _loaders() -> tuple[tuple[str, ...], tuple[Any, ...], tuple[str, ...], tuple[Any, ...]]:
    def converters(fields: tuple[models.Field[Any, Any], ...]) -> tuple[Any, ...]:
        return tuple(getattr(f, "from_db_value", None) for f in fields)

    return (
        tuple(f.attname for f in _fields(Delivery)),
        converters(_fields(Delivery)),
        tuple(f.attname for f in _fields(Event)),
        converters(_fields(Event)),
    )


def _load(
    model: type[models.Model],
    names: tuple[str, ...],
    convert: tuple[Any, ...],
    row: Any,
    db: BaseDatabaseWrapper,
) -> Any:
    """The instance ``model.from_db`` would make of the row, made directly.

    ``from_db`` goes through ``Model.__init__``: its ``pre_init``/``post_init`` signals and its
    loop over every field, the deferred ones included, were 41 of the 57 µs a claimed delivery
    cost to load (bench/README.md, "Outbound events"). What ``from_db`` leaves is an instance
    with the loaded fields' values in ``__dict__`` (a field missing there is deferred, loaded on
    first access) and a ``_state`` saying which database it came from; that is what is built
    here. Neither model has an init signal receiver, which
    ``tests/events/test_claims.py`` checks, so nothing ``__init__`` would run is skipped.
    ``db`` is the connection itself, not Django's per-thread proxy of it, which costs a look-up
    on every use."""
    instance = model.__new__(model)
    state = ModelState()
    state.adding = False
    state.db = db.alias
    instance._state = state
    instance.__dict__.update(
        (name, value if converter is None else converter(value, None, db))
        for name, value, converter in zip(names, row, convert, strict=True)
    )
    return instance


class Claimed(NamedTuple):
    batch: list[Delivery]
    #: More were due, and free to claim, than the batch took.
    more: bool
    #: Due deliveries free to claim besides the batch (seen within the look-ahead).
    free_besides: int
    #: Other runs holding due deliveries (seen within the look-ahead).
    other_runs: int


def claim(
    endpoint: Endpoint,
    token: uuid.UUID,
    size: int,
    now: datetime,
    *,
    first: int | None = None,
    look_ahead: int = 0,
    smallest_share: int = 1,
) -> Claimed:
    """Claim up to ``size`` of the endpoint's due deliveries for ``token`` (``first``, when
    given and due, first; then the longest waiting), each with its event and this endpoint
    object; whether more were due than the batch took; and, within the first ``look_ahead``
    due (0: not counted), how many are free to claim besides the batch and how many other runs
    hold some.

    While other runs hold some, the batch is at most a fair share of what is free (at least
    ``smallest_share``), measured in the same statement as the claim: so the runs sharing a
    burst's end finish about together, rather than one run working alone through a whole
    batch it took while more seemed left."""
    with connection.cursor() as cursor:
        cursor.execute(
            _claim_sql(first is not None),
            {
                "endpoint": endpoint.pk,
                "pending": Delivery.Status.PENDING.value,
                "now": now,
                "size": size,
                "first": first,
                "token": token,
                "lease": now + timedelta(seconds=settings.EVENTS_LEASE_SECONDS),
                "look_ahead": look_ahead,
                "smallest": smallest_share,
            },
        )
        rows = cursor.fetchall()
    delivery_names, delivery_convert, event_names, event_convert = _loaders()
    split = len(delivery_names)
    db = connections[connection.alias]
    batch: list[Delivery] = []
    for row in rows:
        delivery: Delivery = _load(Delivery, delivery_names, delivery_convert, row[:split], db)
        # The related objects go where their descriptors would put them (the ids are loaded
        # already); the endpoint is one object, so that what one outcome learns the next sees.
        delivery._state.fields_cache.update(
            event=_load(Event, event_names, event_convert, row[split:-3], db), endpoint=endpoint
        )
        batch.append(delivery)
    # RETURNING keeps no order: put the batch back in the order it was chosen in.
    batch.sort(key=lambda row: (row.pk != first, row.next_attempt_at, row.pk))
    if not rows:
        return Claimed(batch, more=False, free_besides=0, other_runs=0)
    more, free, others = rows[0][-3:]
    return Claimed(batch, bool(more), free_besides=max(0, free - len(batch)), other_runs=others)
