"""Claiming a write for one worker, with a lease, and every later change fenced on the claim.

A claim is one statement: ``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``, so
two workers never both get a write (the second skips the row the first has locked, or finds it
claimed), no row lock is held during the HTTP requests, and a claim costs one round trip. The same
statement returns what the sender must know about earlier writes of the external id (the note
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


# A claim takes one write by id, when it is due, not held by a live lease, and first of its
# ordering key (an earlier write of the key goes first; its end lets this one go). Everything the
# statement compares is a constant (the id, team, key and external id read with the candidate),
# so PostgreSQL plans each part on the primary key and the indexes made for it even while the
# table's statistics are stale (a fresh outbox filled in one go, before autovacuum's next pass),
# when a join over all due writes could be planned to visit every pending row once per row. The
# conditions are evaluated on the locked row, so a row another worker claimed since the
# statement's snapshot is re-checked and passed over. Table and statuses come from the model,
# values are parameters.
_CLAIM = """
WITH picked AS (
    SELECT w.id, (w.uncertain OR w.status = %(sending)s) AS was_uncertain
    FROM {table} w
    WHERE w.id = %(id)s
      AND w.status IN (%(queued)s, %(sending)s)
      AND w.next_attempt_at <= %(now)s
      AND (w.status = %(queued)s OR w.lease_until IS NULL OR w.lease_until <= %(now)s)
      AND NOT EXISTS (
          SELECT 1 FROM {table} e
          WHERE e.team_id = %(team)s AND e.ordering_key = %(key)s AND e.id < %(id)s
            AND e.status IN (%(queued)s, %(sending)s))
    FOR UPDATE SKIP LOCKED
)
UPDATE {table} AS t
SET status = %(sending)s, claim_token = %(token)s, lease_until = %(lease)s,
    attempts = t.attempts + 1, last_attempt_at = %(now)s, uncertain = true, updated = %(now)s
FROM picked
WHERE t.id = picked.id
RETURNING t.*, picked.was_uncertain,
    (SELECT e.bipsync_id FROM {table} e
     WHERE e.team_id = %(team)s AND e.kind = %(note)s AND e.external_source = %(source)s
       AND e.external_value = %(value)s AND e.id < %(id)s AND e.status = %(delivered)s
       AND e.bipsync_id <> ''
     ORDER BY e.id DESC LIMIT 1) AS known_note_id,
    EXISTS (SELECT 1 FROM {table} e
     WHERE e.team_id = %(team)s AND e.kind = %(note)s AND e.external_source = %(source)s
       AND e.external_value = %(value)s AND e.id < %(id)s AND e.attempts > 0
    ) AS written_before
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


def claim_candidate(candidate: Candidate) -> Claim | None:
    """Take the write for this worker in one statement; None when it is not to be taken now."""
    token = uuid.uuid4()
    rows = list(
        Write.objects.raw(
            _CLAIM.format(table=Write._meta.db_table),
            {
                "id": candidate.id,
                "team": candidate.team_id,
                "key": candidate.ordering_key,
                "source": candidate.external_source,
                "value": candidate.external_value,
                "queued": Write.Status.QUEUED.value,
                "sending": Write.Status.SENDING.value,
                "delivered": Write.Status.DELIVERED.value,
                "note": Write.Kind.NOTE.value,
                "token": token,
                "lease": lease_end(),
                "now": timezone.now(),
            },
        )
    )
    if not rows:
        return None
    [write] = rows
    return Claim(
        write=write,
        token=token,
        uncertain=bool(getattr(write, "was_uncertain")),  # noqa: B009 - a column of the raw query
        known_note_id=getattr(write, "known_note_id") or None,  # noqa: B009
        written_before=bool(getattr(write, "written_before")),  # noqa: B009
    )


def claim(write_id: int) -> Claim:
    """Take this write for this worker, or raise :class:`NotClaimed` saying why not."""
    row = Write.objects.filter(pk=write_id).values_list(*_CANDIDATE_FIELDS).first()
    held = claim_candidate(Candidate(*row)) if row is not None else None
    if held is None:
        raise NotClaimed(_why_not(write_id))
    return held


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
