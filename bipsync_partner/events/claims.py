"""Claiming a batch of one endpoint's due deliveries in one statement.

The deliverer claims a batch, POSTs each delivery, and marks the batch's outcomes. Built by the
ORM, a claim was five round trips (a transaction around ``SELECT ... FOR UPDATE SKIP LOCKED`` of
the ids, the ``UPDATE`` of their lease, then a ``SELECT`` of the rows with their events), and
building those queries and rows was most of what a delivery cost beyond its POST, on the cores
the POSTs need (bench/README.md, "Outbound events"). Here it is one statement, generated from the
models' own metadata on first use: ``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED)
RETURNING`` what sending needs of each claimed row and its event, as plain values: the event's
body as PostgreSQL prints its JSON (sent as it is, so it is neither decoded nor encoded again),
and no model instances (building two per delivery cost more than its signature).

Two workers never both get a delivery: the second skips the rows the first has locked, and
re-checks the lease on the rows it locks.
"""

# The statement is assembled from the models' own table and column names (quoted by the
# backend), never from input; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import connection

from bipsync_partner.events.models import Delivery, Endpoint, Event
from bipsync_partner.sqlnames import column as _column
from bipsync_partner.sqlnames import quoted as _quoted


@dataclass(slots=True)
class ClaimedDelivery:
    """What sending a claimed delivery needs: its id and attempts, its event's ``webhook-id``,
    type and body, and the endpoint (one object for the batch, so that what one outcome learns
    of it the next sees)."""

    id: int
    attempts: int
    first_attempt_at: datetime | None
    uid: str
    type: str
    #: The event's payload as stored, printed by PostgreSQL: the body sent and signed.
    body: str
    endpoint: Endpoint


@functools.cache
def _claim_sql(first: bool) -> str:
    table = _quoted(Delivery._meta.db_table)
    events = _quoted(Event._meta.db_table)
    endpoints = _quoted(Endpoint._meta.db_table)
    d = functools.partial(_column, Delivery)
    e = functools.partial(_column, Event)

    def priority(alias: str) -> str:
        # ``first`` (the delivery a task was queued for) goes ahead of the rest when it is due.
        return f"({alias}.{d('id')} = %(first)s)" if first else "false"

    return f"""
        WITH endpoint AS (
            -- The endpoint's row version: the deliverer reloads its endpoint (secrets, URL)
            -- only when it changed. A disabled endpoint has nothing claimed.
            SELECT xmin::text AS version FROM {endpoints}
            WHERE {_column(Endpoint, "id")} = %(endpoint)s AND {_column(Endpoint, "enabled")}
        ), ahead AS (
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
            SELECT d.{d("id")} AS id, d.{d("next_attempt_at")} AS at, {priority("d")} AS named
            FROM {table} d
            WHERE d.{d("endpoint")} = %(endpoint)s AND d.{d("status")} = %(pending)s
              AND d.{d("next_attempt_at")} <= %(now)s
              AND (d.{d("lease_until")} IS NULL OR d.{d("lease_until")} < %(now)s)
              AND EXISTS (SELECT FROM endpoint)
            ORDER BY named DESC, d.{d("next_attempt_at")}, d.{d("id")}
            -- The batch asked for, not the share: a LIMIT the planner cannot read made it
            -- estimate a tenth of the endpoint's rows, and scan the whole table to update them.
            LIMIT %(size)s + 1
            FOR UPDATE SKIP LOCKED
        ), taken AS (
            SELECT id, at, named FROM due ORDER BY named DESC, at, id LIMIT (SELECT size FROM share)
        ), claimed AS (
            UPDATE {table} AS t
            SET {d("claim_token")} = %(token)s, {d("lease_until")} = %(lease)s
            FROM {events} AS e
            -- By primary key whatever the planner estimates of the share (a join with a
            -- misestimated set of ids was a sequential scan of the table).
            WHERE t.{d("id")} = ANY(ARRAY(SELECT id FROM taken))
              AND e.{e("id")} = t.{d("event")}
            RETURNING t.{d("id")} AS id, t.{d("attempts")} AS attempts,
                t.{d("first_attempt_at")} AS first_attempt_at, t.{d("next_attempt_at")} AS at,
                {priority("t")} AS named,
                e.{e("uid")} AS uid, e.{e("type")} AS type, e.{e("payload")}::text AS body
        )
        -- RETURNING keeps no order: the batch in the order it was chosen in.
        SELECT c.id, c.attempts, c.first_attempt_at, c.uid, c.type, c.body,
            (SELECT count(*) FROM due) > (SELECT size FROM share),
            (SELECT free FROM seen), (SELECT others FROM seen), (SELECT version FROM endpoint)
        FROM claimed c
        ORDER BY c.named DESC, c.at, c.id
    """


class Claimed(NamedTuple):
    batch: list[ClaimedDelivery]
    #: More were due, and free to claim, than the batch took.
    more: bool
    #: Due deliveries free to claim besides the batch (seen within the look-ahead).
    free_besides: int
    #: Other runs holding due deliveries (seen within the look-ahead).
    other_runs: int
    #: The endpoint the batch goes to, and the version of its row that it was loaded at (None
    #: when nothing was claimed).
    endpoint: Endpoint | None = None
    endpoint_version: str = ""

    @classmethod
    def nothing(cls) -> Claimed:
        """No batch: what a claim finds when nothing is due (and a run's start)."""
        return cls([], more=False, free_besides=0, other_runs=0)


def _load_endpoint(endpoint_id: uuid.UUID | str) -> Endpoint | None:
    return Endpoint.objects.select_related("team").filter(id=endpoint_id, enabled=True).first()


def claim(
    endpoint_id: uuid.UUID | str,
    token: uuid.UUID,
    size: int,
    now: datetime,
    *,
    known: Endpoint | None = None,
    known_version: str = "",
    first: int | None = None,
    look_ahead: int = 0,
    smallest_share: int = 1,
) -> Claimed:
    """Claim up to ``size`` of the endpoint's due deliveries for ``token`` (``first``, when
    given and due, first; then the longest waiting), each with its event and the endpoint;
    whether more were due than the batch took; and, within the first ``look_ahead`` due (0: not
    counted), how many are free to claim besides the batch and how many other runs hold some.

    ``known`` is the endpoint as a previous claim of the run loaded it, at ``known_version`` of
    its row: used again while its row is unchanged, and loaded afresh once it changed (a rotated
    secret, a new URL), so that a run reads the endpoint once rather than once per batch.

    While other runs hold some, the batch is at most a fair share of what is free (at least
    ``smallest_share``), measured in the same statement as the claim: so the runs sharing a
    burst's end finish about together, rather than one run working alone through a whole
    batch it took while more seemed left."""
    with connection.cursor() as cursor:
        cursor.execute(
            _claim_sql(first is not None),
            {
                "endpoint": endpoint_id,
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
    if not rows:
        return Claimed.nothing()
    more, free, others, version = rows[0][-4:]
    endpoint = known if known is not None and version == known_version else None
    if endpoint is None:
        # Loaded after the claim saw its version: a change in between is loaded now and seen
        # again by the next claim, which loads it once more (never an older endpoint).
        endpoint = _load_endpoint(endpoint_id)
        if endpoint is None:  # disabled since the claim: give the batch back
            release([row[0] for row in rows], token)
            return Claimed.nothing()
    batch = [
        ClaimedDelivery(pk, attempts, first_attempt_at, uid, event_type, body, endpoint)
        for pk, attempts, first_attempt_at, uid, event_type, body, *_ in rows
    ]
    return Claimed(
        batch,
        bool(more),
        free_besides=max(0, free - len(batch)),
        other_runs=others,
        endpoint=endpoint,
        endpoint_version=version,
    )


def release(ids: list[int], token: uuid.UUID) -> None:
    """Give back claimed deliveries not attempted: due again at once, for any run."""
    if ids:
        Delivery.objects.filter(id__in=ids, claim_token=token).update(
            claim_token=None, lease_until=None
        )
