"""One run per connection at a time: a Postgres advisory lock keyed by the connection.

The lock is held by the worker's database session for the whole slice (released by Postgres if
the worker dies, which is what lets a restarted worker resume at once). Session locks need a
session: behind PgBouncer, use session pooling for workers.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
from collections.abc import Iterator

from django.db import connection

LOCK_NAMESPACE = "bipsync-partner.sync.run"


def lock_key(connection_id: uuid.UUID | str) -> int:
    """A signed 64-bit advisory lock key for "the sync of this connection" (its UUID hashed
    with a namespace, so that other advisory locks in the database cannot collide with it)."""
    digest = hashlib.blake2b(f"{LOCK_NAMESPACE}:{connection_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def try_lock(connection_id: uuid.UUID | str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock_key(connection_id)])
        row = cursor.fetchone()
    return bool(row and row[0])


def unlock(connection_id: uuid.UUID | str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_key(connection_id)])


@contextlib.contextmanager
def run_lock(connection_id: uuid.UUID | str, *, attempts: int = 5) -> Iterator[bool]:
    """Hold the connection's sync lock for the block; yields False when another session has it.

    A few short tries: the due-runs sweep probes the lock for a moment, and a task arriving at
    that moment must not give up.
    """
    got = False
    for attempt in range(attempts):
        got = try_lock(connection_id)
        if got:
            break
        time.sleep(0.05 * (attempt + 1))
    try:
        yield got
    finally:
        if got:
            unlock(connection_id)


def lock_is_free(connection_id: uuid.UUID | str) -> bool:
    """Whether no session holds the connection's sync lock (probes by taking it briefly)."""
    if try_lock(connection_id):
        unlock(connection_id)
        return True
    return False
