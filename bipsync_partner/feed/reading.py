"""Reading a team's feed in commit order, with cursors that never skip a change.

A sequence hands out ids before commit: a transaction that took id 10 may commit after one
that took id 11, so a reader at "after 11" would never see 10. The feed is ordered by the
writing transaction's id and then the row's, ``(txid, id)``, and serves only rows whose
transaction is older than the oldest one still running, ``pg_snapshot_xmin(
pg_current_snapshot())``: every transaction before that xmin has committed or rolled back
(PostgreSQL, "Transaction ID and Snapshot Information Functions",
https://www.postgresql.org/docs/current/functions-info.html), so nothing can appear behind a
served row any more and a cursor is final. The cost is a delay as long as the longest running
transaction, in a team's feed or not.

Cursors are signed (``django.core.signing``), so a client cannot make one up; they carry the
position only.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from django.core import signing
from django.db import connection

_SIGNER = signing.Signer(salt="bipsync_partner.feed.cursor", sep=".")

#: Before every entry.
START = (0, 0)


class Change(NamedTuple):
    """One entry, made straight from its row (``Change._make``): a page builds a thousand, and
    a frozen dataclass's ``__init__`` cost ten times as much per entry (bench/README.md,
    "Change feed")."""

    id: int
    txid: int
    resource: str
    tenant: str
    bipsync_id: str
    action: str
    row_id: int
    created: datetime

    @property
    def cursor(self) -> str:
        return encode_cursor(self.txid, self.id)


@dataclass(frozen=True)
class FeedPage:
    entries: list[Change]
    #: Where the next read starts: past the last entry, or where this one started.
    next_cursor: str
    #: More entries are ready now (else the next read may still find new ones later).
    has_more: bool


def encode_cursor(txid: int, entry_id: int) -> str:
    raw = f"{txid}-{entry_id}".encode()
    return _SIGNER.sign(base64.urlsafe_b64encode(raw).decode().rstrip("="))


def decode_cursor(cursor: str) -> tuple[int, int]:
    """The position a cursor names; ValueError with a sentence for anything not made here."""
    try:
        payload = _SIGNER.unsign(cursor)
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
        txid, entry_id = (int(part) for part in raw.split("-"))
    except (signing.BadSignature, binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(
            "The cursor is not one this feed gave out; start again without it or with a "
            "cursor from a previous page."
        ) from exc
    if txid < 0 or entry_id < 0:
        raise ValueError("The cursor names no position in the feed.")
    return txid, entry_id


# The columns are qualified and the text of txid has a name of its own: ORDER BY a bare name
# means the output column of that name first (PostgreSQL, "Sorting Rows",
# https://www.postgresql.org/docs/current/queries-order.html), and ``txid::text`` named "txid"
# would sort as text ("10" before "9") and by a sort of every row instead of the index. The
# columns are Change's fields in order; txid comes as a bigint (an xid8 is the epoch times 2^32
# plus the xid, far from 2^63).
_READ = """
SELECT e.id, e.txid::text::bigint AS txid_number, e.resource, e.tenant, e.bipsync_id, e.action, e.row_id,
       e.created
FROM feed_feedentry AS e
WHERE e.team_id = %(team)s
  AND (e.txid, e.id) > (%(txid)s::xid8, %(id)s)
  AND e.txid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY e.txid, e.id
LIMIT %(limit)s
"""

_NEWEST = """
SELECT e.txid::text AS txid_text, e.id FROM feed_feedentry AS e WHERE e.team_id = %(team)s
ORDER BY e.txid DESC, e.id DESC LIMIT 1
"""


def read_changes(team_id: int, after: str | None, limit: int) -> FeedPage:
    """Up to ``limit`` (at least 1) of the team's changes after the cursor ``after`` (from the
    start when None), oldest first. Raises ValueError for a cursor not made here."""
    txid, entry_id = START if after is None else decode_cursor(after)
    limit = max(1, limit)
    with connection.cursor() as cursor:
        cursor.execute(
            _READ, {"team": team_id, "txid": str(txid), "id": entry_id, "limit": limit + 1}
        )
        rows = cursor.fetchall()
    entries = [Change._make(row) for row in rows[:limit]]
    next_cursor = entries[-1].cursor if entries else encode_cursor(txid, entry_id)
    return FeedPage(entries=entries, next_cursor=next_cursor, has_more=len(rows) > limit)


def current_cursor(team_id: int) -> str:
    """The cursor just past the team's newest entry (its own transaction's included): a reader
    that has reached it has read every change made before it was taken."""
    with connection.cursor() as cursor:
        cursor.execute(_NEWEST, {"team": team_id})
        row = cursor.fetchone()
    return encode_cursor(*START) if row is None else encode_cursor(int(row[0]), row[1])
