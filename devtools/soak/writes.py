"""The soak's writes, on the runner's side: which connections write, the feed's plan, how many
writes are still pending, and the wait for them to drain after the run.

The Django side (the feed, and the count of notes per external id at the sandbox) is in
:mod:`devtools.soak.partner_writes`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from devtools.soak.config import SoakConfig

#: Service-account connections that write, spread over the tenants like the syncing ones.
WRITERS = 20


def feed_plan(
    config: SoakConfig,
    manifest: list[dict[str, Any]],
    plan: dict[str, Any],
    revoked: set[str],
    t0: float,
    logs: Path,
) -> Path:
    """Write the feed's plan; return its path. Writers are service-account connections whose
    grants the soak does not revoke (their writes would rightly fail: needs reconnecting)."""
    authors = {b["tenant"]: b["bipsync_user_id"] for b in plan["batches"]}
    service = [
        m for m in manifest if m["kind"] == "service_account" and m["connection"] not in revoked
    ]
    step = max(1, len(service) // WRITERS)
    writers = [
        {"connection": m["connection"], "author": authors[m["tenant"]]}
        for m in service[::step][:WRITERS]
    ]
    path = logs / "writes-plan.json"
    path.write_text(
        json.dumps(
            {
                "writes": config.writes,
                "writers": writers,
                # The feed ends before the run does, so that the last writes are delivered
                # within the run, faults' back-off included.
                "until": t0 + 0.85 * config.seconds,
                "committed_path": str(logs / "writes-committed.json"),
            }
        )
    )
    return path


#: Writes still to be delivered, but for those that wait for their connection to be reconnected
#: (nobody reconnects in the soak; the report judges them). The same test as ``waits`` in
#: :func:`devtools.soak.partner_writes.verify`, in SQL: the runner has no Django.
PENDING_SQL = """
SELECT count(*) FROM writes_write w LEFT JOIN connections_connection c ON c.id = w.connection_id
WHERE w.status IN ('queued', 'sending')
  AND NOT (w.status = 'queued' AND c.status IS NOT DISTINCT FROM 'needs_reconnect')
"""


def pending_writes(database_url: str) -> int | None:
    """Writes queued or being sent, but for those that wait for a reconnect (None while the
    database does not answer)."""
    try:
        with psycopg.connect(database_url, connect_timeout=3, autocommit=True) as conn:
            row = conn.execute(PENDING_SQL).fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) if row else 0


def drain(database_url: str, seconds: float, on_wait: Callable[[int | None], None]) -> float:
    """Wait until no write is pending, for at most ``seconds``; how long it took."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        left = pending_writes(database_url)
        if left == 0:
            break
        on_wait(left)
        time.sleep(1)
    return time.monotonic() - started
