"""Claiming writes for one worker, with a lease, and every later change fenced on the claim.

A claim is one statement: ``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``, so
two workers never both get a write (the second skips the row the first has locked, or finds it
claimed), no row lock is held during the HTTP requests, and a claim costs one round trip and one
durable commit, for one write or a group of them (a delivery run claims ``WRITES_GROUP_SIZE`` at
a time, see writes/delivery.py). The same statement returns what the sender must know about earlier writes of the external id (the note
an earlier write produced, and whether one was ever attempted), so delivering a note needs no
further read.

The lease (``claim_token``, ``lease_until``) is written by that statement: a worker killed
mid-delivery leaves the write "sending" until its lease runs out, and the next claimant then
knows an attempt may have reached Bipsync (``uncertain``) and looks it up first.

Each change after the claim (progress, the outcome) updates the row only ``WHERE claim_token =
<mine>``: a worker whose lease ran out while it was stalled cannot overwrite the work of the one
that took over.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from bipsync_partner.writes.models import Write


@dataclass(frozen=True)
class Claim:
    write: Write
    token: uuid.UUID
    #: Whether an earlier attempt may have reached Bipsync without us learning its outcome.
    uncertain: bool
    #: The note an earlier delivered write of the same external id produced (notes only).
    known_note_id: str | None = None
    #: An earlier write of the same external id was attempted: Bipsync may hold a note by it
    #: even when that write ended without learning its id.
    written_before: bool = False

    def update(self, **fields: Any) -> bool:
        """Change the claimed row; False when the claim was lost (another worker has it)."""
        fields.setdefault("updated", timezone.now())
        return Write.objects.filter(pk=self.write.pk, claim_token=self.token).update(**fields) == 1

    def renew(self) -> bool:
        return self.update(lease_until=lease_end())


def lease_end() -> Any:
    return timezone.now() + timedelta(seconds=settings.WRITES_LEASE_SECONDS)


class NotClaimed(Exception):
    """Why a write could not be claimed now: ``reason`` is a short word for logs and tests."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# A claim takes writes by id (a group of candidates read beforehand), each when it is due, not
# held by a live lease, and first of its ordering key (an earlier write of the key goes first;
# its end lets this one go). The ids are constants, so PostgreSQL finds the rows by the primary
# key; "first of its key" and the look-ups of earlier writes of the external id are asked of each
# row with its own values (an index probe each, ``OFFSET 0`` keeping the NOT EXISTS a per-row
# probe), so the plan holds while the table's statistics are stale (a fresh outbox filled in one
# go, before autovacuum's next pass), when a join over all due writes could be planned to visit
# every pending row once per row. The conditions are evaluated on the locked row, so a row another
# worker claimed since the statement's snapshot is re-checked and passed over. Table and statuses
# come from the model, values are parameters.
_CLAIM = """
WITH picked AS (
    SELECT w.id, (w.uncertain OR w.status = %(sending)s) AS was_uncertain
    FROM {table} w
    WHERE w.id = ANY(%(ids)s)
      AND w.team_id = %(team)s
      AND w.status IN (%(queued)s, %(sending)s)
      AND w.next_attempt_at <= %(now)s
      AND (w.status = %(queued)s OR w.lease_until IS NULL OR w.lease_until <= %(now)s)
      AND NOT EXISTS (
          SELECT 1 FROM {table} e
          WHERE e.team_id = w.team_id AND e.ordering_key = w.ordering_key AND e.id < w.id
            AND e.status IN (%(queued)s, %(sending)s)
          OFFSET 0)
    FOR UPDATE OF w SKIP LOCKED
)
UPDATE {table} AS t
SET status = %(sending)s, claim_token = %(token)s, lease_until = %(lease)s,
    attempts = t.attempts + 1, last_attempt_at = %(now)s, uncertain = true, updated = %(now)s
FROM picked
WHERE t.id = picked.id
RETURNING t.*, picked.was_uncertain,
    (SELECT e.bipsync_id FROM {table} e
     WHERE e.team_id = t.team_id AND e.kind = %(note)s AND e.external_source = t.external_source
       AND e.external_value = t.external_value AND e.id < t.id AND e.status = %(delivered)s
       AND e.bipsync_id <> ''
     ORDER BY e.id DESC LIMIT 1) AS known_note_id,
    EXISTS (SELECT 1 FROM {table} e
     WHERE e.team_id = t.team_id AND e.kind = %(note)s AND e.external_source = t.external_source
       AND e.external_value = t.external_value AND e.id < t.id AND e.attempts > 0
    ) AS written_before
"""

# Giving back claimed writes that were never sent (a group whose run stopped before reaching
# them): as they were before the claim, so the next claimant neither counts an attempt nor looks
# up a note that was never written. Fenced on the claim.
_GIVE_BACK = """
UPDATE {table} AS t
SET status = %(queued)s, claim_token = NULL, lease_until = NULL, attempts = t.attempts - 1,
    uncertain = given.was_uncertain, updated = %(now)s
FROM unnest(%(ids)s::bigint[], %(uncertain)s::boolean[]) AS given(id, was_uncertain)
WHERE t.id = given.id AND t.claim_token = %(token)s
"""

# Delivered outcomes of a group, each fenced on its own claim; the ids it recorded.
_DELIVERED = """
UPDATE {table} AS t
SET status = %(delivered)s, bipsync_id = done.bipsync_id, connection_id = done.connection_id,
    uncertain = false, error = '', error_code = '', claim_token = NULL, lease_until = NULL,
    finished_at = %(now)s, updated = %(now)s
FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[], %(bipsync_ids)s::text[],
            %(connections)s::{connection_type}[]) AS done(id, token, bipsync_id, connection_id)
WHERE t.id = done.id AND t.claim_token = done.token
RETURNING t.id
"""


@dataclass(frozen=True)
class Candidate:
    """What a claim compares, read beforehand (see ``_CLAIM``)."""

    id: int
    team_id: int
    ordering_key: str
    external_source: str
    external_value: str


_CANDIDATE_FIELDS = ("id", "team_id", "ordering_key", "external_source", "external_value")


# Due writes that nobody holds and that lead their ordering key, oldest-due first. "Leads its
# key" is asked of each row with its own values (an index probe of ``write_pending_by_key``):
# ``OFFSET 0`` keeps PostgreSQL from turning the NOT EXISTS into an anti-join, which it plans on
# a fresh, unanalysed outbox (10,000 rows believed to be one) as a nested loop comparing every
# pending row of the team with every other, over 30 s per read.
_DUE = """
SELECT w.id, w.team_id, w.ordering_key, w.external_source, w.external_value
FROM {table} w
WHERE w.team_id = %(team)s
  AND w.status IN (%(queued)s, %(sending)s)
  AND w.next_attempt_at <= %(now)s
  AND (w.status = %(queued)s OR w.lease_until IS NULL OR w.lease_until <= %(now)s)
  AND NOT EXISTS (
      SELECT 1 FROM {table} e
      WHERE e.team_id = w.team_id AND e.ordering_key = w.ordering_key AND e.id < w.id
        AND e.status IN (%(queued)s, %(sending)s)
      OFFSET 0)
ORDER BY w.next_attempt_at
LIMIT %(limit)s
"""


def due_candidates(team_id: int, limit: int) -> list[Candidate]:
    """Up to ``limit`` of the team's due writes that nobody holds and that lead their ordering
    key, oldest-due first (see ``_DUE``)."""
    with connection.cursor() as cursor:
        cursor.execute(
            _DUE.format(table=Write._meta.db_table),
            {
                "team": team_id,
                "queued": Write.Status.QUEUED.value,
                "sending": Write.Status.SENDING.value,
                "now": timezone.now(),
                "limit": limit,
            },
        )
        return [Candidate(*row) for row in cursor.fetchall()]


def claim_candidates(team_id: int, candidates: Sequence[Candidate]) -> list[Claim]:
    """Take for this worker, in one statement, those of the team's candidates that are to be
    taken now (see ``_CLAIM``), in the candidates' order; they share one claim token."""
    if not candidates:
        return []
    token = uuid.uuid4()
    rows = Write.objects.raw(
        _CLAIM.format(table=Write._meta.db_table),
        {
            "ids": [candidate.id for candidate in candidates],
            "team": team_id,
            "queued": Write.Status.QUEUED.value,
            "sending": Write.Status.SENDING.value,
            "delivered": Write.Status.DELIVERED.value,
            "note": Write.Kind.NOTE.value,
            "token": token,
            "lease": lease_end(),
            "now": timezone.now(),
        },
    )
    taken = {
        write.pk: Claim(
            write=write,
            token=token,
            uncertain=bool(getattr(write, "was_uncertain")),  # noqa: B009 - a column of the query
            known_note_id=getattr(write, "known_note_id") or None,  # noqa: B009
            written_before=bool(getattr(write, "written_before")),  # noqa: B009
        )
        for write in rows
    }
    return [taken[candidate.id] for candidate in candidates if candidate.id in taken]


def give_back(claims: Sequence[Claim]) -> None:
    """Return claimed writes that were not sent to the queue, as they were before their claim."""
    for token in {held.token for held in claims}:
        mine = [held for held in claims if held.token == token]
        with connection.cursor() as cursor:
            cursor.execute(
                _GIVE_BACK.format(table=Write._meta.db_table),
                {
                    "ids": [held.write.pk for held in mine],
                    "uncertain": [held.uncertain for held in mine],
                    "token": token,
                    "queued": Write.Status.QUEUED.value,
                    "now": timezone.now(),
                },
            )


def record_delivered(delivered: Sequence[tuple[Claim, str]]) -> set[int]:
    """Mark the claimed writes delivered with their Bipsync ids, in one statement; the ids of
    those whose claim still held (the others belong to whoever took them over)."""
    connection_type = Write._meta.get_field("connection").target_field.db_type(connection)
    with connection.cursor() as cursor:
        cursor.execute(
            _DELIVERED.format(table=Write._meta.db_table, connection_type=connection_type),
            {
                "ids": [held.write.pk for held, _ in delivered],
                "tokens": [held.token for held, _ in delivered],
                "bipsync_ids": [bipsync_id for _, bipsync_id in delivered],
                "connections": [held.write.connection_id for held, _ in delivered],
                "delivered": Write.Status.DELIVERED.value,
                "now": timezone.now(),
            },
        )
        recorded = {row[0] for row in cursor.fetchall()}
    for held, bipsync_id in delivered:
        if held.write.pk in recorded:
            held.write.status = Write.Status.DELIVERED
            held.write.bipsync_id = bipsync_id
    return recorded


def claim(write_id: int) -> Claim:
    """Take this write for this worker, or raise :class:`NotClaimed` saying why not."""
    row = Write.objects.filter(pk=write_id).values_list(*_CANDIDATE_FIELDS).first()
    held = claim_candidates(row[1], [Candidate(*row)]) if row is not None else []
    if not held:
        raise NotClaimed(_why_not(write_id))
    return held[0]


def _why_not(write_id: int) -> str:
    """Why the claim found nothing (read after it, for logs and tests; racy by nature)."""
    write = Write.objects.filter(pk=write_id).first()
    now = timezone.now()
    if write is None:
        return "locked or gone"
    if write.is_final:
        return "final"
    if write.status == Write.Status.SENDING and (
        write.lease_until is not None and write.lease_until > now
    ):
        return "leased"
    if write.next_attempt_at > now:
        return "not due"
    earlier = Write.objects.filter(
        team_id=write.team_id,
        ordering_key=write.ordering_key,
        id__lt=write.id,
        status__in=Write.PENDING,
    )
    if earlier.exists():
        return "waiting for an earlier write"
    return "locked or gone"
