"""The change feed: a walk of the whole feed through ``read_changes`` against a plain indexed scan
of the same table, and what the feed's triggers cost a research page insert, in the same run.

- The walk: CHANGES entries (default 1,000,000) of one team in ``feed_feedentry``, filled by one
  ``INSERT ... SELECT generate_series``: 100 entries per transaction id (a sync page), and every
  other pair of transaction ids swapped so later ids sort first, as commits out of id order do.
  ``read_changes`` pages of PAGE (1,000) from the start to the end, cursor to cursor, against a
  keyset scan on the primary key alone (``WHERE id > %s ORDER BY id LIMIT PAGE``, the same
  columns, the same connection). Alternating, ROUNDS (3) of each; the ratio is the median scan
  time over the median walk time. Target >= 0.7.
- The triggers: PAGES (200) research pages of 100 rows, each one ``INSERT`` in its own
  transaction, with the feed's insert trigger on and off (``ALTER TABLE ... DISABLE TRIGGER``),
  alternating, ROUNDS of each; the figure is the median time per page with and without.

The partner app gets a fresh database ``bench_partner_<pid>``, removed at the end.

    .venv/bin/python bench/feed_bench.py [--changes 1000000] [--page 1000] [--rounds 3]
        [--pages 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.sync_bench import load, partner_database, partner_env, say, setup_django  # noqa: E402

#: Entries per transaction id in the filled feed: one sync page.
PER_TRANSACTION = 100

_FILL = """
INSERT INTO feed_feedentry (team_id, resource, tenant, bipsync_id, action, row_id, txid)
SELECT %(team)s, 'research', 'acme', lpad(to_hex(g), 24, '0'), 'created', g,
       (%(base)s + (((g - 1) / %(per)s) # 1))::text::xid8
FROM generate_series(1, %(count)s) AS g
"""

_SCAN = """
SELECT id, txid::text, resource, tenant, bipsync_id, action, row_id, created
FROM feed_feedentry WHERE id > %s ORDER BY id LIMIT %s
"""

_PAGE_INSERT = """
INSERT INTO sync_researchdocument (team_id, tenant, bipsync_id, content_hash, first_synced_at,
    changed_at, title, content_type_bid, author_bid, author_name, lookup_fields)
SELECT %(team)s, 'acme', lpad(to_hex(%(start)s + g), 24, '0'), 'h', now(), now(),
       'Research ' || g, '', '', '', '{}'
FROM generate_series(1, 100) AS g
"""


def fill(team_id: int, count: int) -> float:
    """Write ``count`` entries of the team; every transaction id is below the cluster's xmin
    (already finished), so the feed serves them all."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        xmin = cursor.fetchone()[0]
        ids_needed = count // PER_TRANSACTION + 2
        if xmin <= ids_needed + 1:
            raise SystemExit(f"The server's transaction ids are too young ({xmin}) for the fill.")
        base = xmin - ids_needed - 1
        cursor.execute(
            _FILL, {"team": team_id, "base": base, "per": PER_TRANSACTION, "count": count}
        )
        cursor.execute("VACUUM ANALYZE feed_feedentry")
    return time.perf_counter() - started


def walk_feed(team_id: int, page: int, expected: int) -> float:
    from bipsync_partner.feed.reading import read_changes

    started = time.perf_counter()
    seen = 0
    after = None
    with tqdm(total=expected, desc="feed walk", unit="change", leave=False) as bar:
        while True:
            found = read_changes(team_id, after, page)
            seen += len(found.entries)
            bar.update(len(found.entries))
            after = found.next_cursor
            if not found.has_more:
                break
    seconds = time.perf_counter() - started
    assert seen == expected, f"the feed walk saw {seen} of {expected}"
    return seconds


def scan_table(page: int, expected: int) -> float:
    from django.db import connection

    started = time.perf_counter()
    seen = 0
    last = 0
    with (
        connection.cursor() as cursor,
        tqdm(total=expected, desc="plain scan", unit="row", leave=False) as bar,
    ):
        while True:
            cursor.execute(_SCAN, [last, page])
            rows = cursor.fetchall()
            if not rows:
                break
            seen += len(rows)
            bar.update(len(rows))
            last = rows[-1][0]
    seconds = time.perf_counter() - started
    assert seen == expected, f"the plain scan saw {seen} of {expected}"
    return seconds


def insert_pages(team_id: int, pages: int, start: int, with_trigger: bool) -> float:
    """Seconds per research page of 100 rows, each page its own transaction."""
    from django.db import connection, transaction

    switch = "ENABLE" if with_trigger else "DISABLE"
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE sync_researchdocument {switch} TRIGGER feed_inserted")
    started = time.perf_counter()
    for n in range(pages):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_PAGE_INSERT, {"team": team_id, "start": start + n * 100})
    return (time.perf_counter() - started) / pages


def alternate(rounds: int, first: Callable[[], float], second: Callable[[], float]) -> Any:
    """``rounds`` runs of each, alternating, which one goes first swapping every round (so a
    change of the machine's load falls on both)."""
    a: list[float] = []
    b: list[float] = []
    for n in range(rounds):
        if n % 2 == 0:
            a.append(first())
            b.append(second())
        else:
            b.append(second())
            a.append(first())
        say(f"  round {n + 1}: {a[-1]:.4f} / {b[-1]:.4f}  (load {load()})")
    return a, b


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=1_000_000)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    load_before = load()
    with partner_database() as db_name:
        setup_django(partner_env(db_name, None, None))
        from django.db import connection

        from accounts.models import Team

        team = Team.objects.create(name="Feed bench")
        say(f"filling {args.changes:,} feed entries")
        filled = fill(team.pk, args.changes)
        say(f"  {filled:.1f} s")
        with connection.cursor() as cursor:
            cursor.execute(
                "EXPLAIN (ANALYZE, BUFFERS) SELECT id FROM feed_feedentry WHERE team_id = %s "
                "AND (txid, id) > ('0'::xid8, 0) AND txid < pg_snapshot_xmin("
                "pg_current_snapshot()) ORDER BY txid, id LIMIT %s",
                [team.pk, args.page + 1],
            )
            plan = [row[0] for row in cursor.fetchall()]
        say("\n".join(plan))

        say(f"walk: read_changes pages of {args.page} vs a keyset scan on id")
        walks, scans = alternate(
            args.rounds,
            lambda: walk_feed(team.pk, args.page, args.changes),
            lambda: scan_table(args.page, args.changes),
        )
        walk, scan = statistics.median(walks), statistics.median(scans)

        say(f"triggers: {args.pages} research pages of 100 rows, with and without")
        starts = iter(range(0, 10**9, args.pages * 100))
        withs, withouts = alternate(
            args.rounds,
            lambda: insert_pages(team.pk, args.pages, next(starts), True),
            lambda: insert_pages(team.pk, args.pages, next(starts), False),
        )
        with_trigger, without_trigger = statistics.median(withs), statistics.median(withouts)
    result = {
        "machine": f"{os.cpu_count()} cores, {platform.python_version()}",
        "load": [load_before, load()],
        "changes": args.changes,
        "page": args.page,
        "fill_seconds": round(filled, 1),
        "walk_seconds": [round(s, 2) for s in walks],
        "scan_seconds": [round(s, 2) for s in scans],
        "walk_changes_per_second": round(args.changes / walk),
        "scan_rows_per_second": round(args.changes / scan),
        "ratio": round(scan / walk, 3),
        "target": 0.7,
        "page_insert_ms_with_trigger": [round(s * 1000, 2) for s in withs],
        "page_insert_ms_without_trigger": [round(s * 1000, 2) for s in withouts],
        "trigger_cost_per_page_ms": round((with_trigger - without_trigger) * 1000, 2),
        "trigger_cost_ratio": round(with_trigger / without_trigger, 3),
    }
    say(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
