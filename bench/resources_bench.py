"""Reference data: the sync of 100,000 categories through the resource machinery against raw
paging of the same GraphQL pages, measured in the same run.

- ``full``: the sandbox generates ``--categories`` companies (one bulk write) in a tenant; each
  round a new team's connection syncs the tenant (``engine.execute`` with SYNC_RESOURCES set to
  ``categories``: the real scan, hashes, upserts, scan pages and checkpoints in PostgreSQL),
  bracketed by two raw passes: the same :class:`GraphqlClient` on the same connection's
  ``BipsyncApi``, the same query and page size, no database. The ratio is the sync's rate
  against the faster raw pass (the conservative choice), alternating raw and sync; median of
  ``--rounds`` rounds. Target >= 0.7.
- ``unchanged``: the last round's connection syncs again; rows written, counted by xmin
  (target 0).
- ``memory``: peak memory of a sync of the full set and of a tenth of it, each in a fresh
  process: peak RSS (VmHWM reset before the sync) and Python's traced peak (tracemalloc).
  Target ratio <= 1.2.

The sandbox runs under gunicorn on 127.0.0.1 with its own database; the partner app gets a fresh
database; both are dropped at the end (see bench/sync_bench.py).

    .venv/bin/python bench/resources_bench.py [all|memory] [--categories 100000] [--rounds 3]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.sync_bench import (  # noqa: E402
    _status_kb,
    load,
    partner_database,
    partner_env,
    running_sandbox,
    say,
    setup_django,
)
from devtools.sandbox_server import Sandbox  # noqa: E402
from devtools.sandbox_world import SandboxWorld, make_world  # noqa: E402

#: What the connection is granted: the categories' own scope and those of their fields.
SCOPES = "rest_api:read categories:read classifications:read external_ids:read"


def make_connection(world: SandboxWorld, name: str) -> Any:
    """The customer's client-credentials connection of a new team."""
    from accounts.models import Team
    from bipsync_partner.connections.models import Connection

    team = Team.objects.create(name=name, slug=f"{name.lower()}-{uuid.uuid4().hex[:6]}")
    return Connection.objects.create(
        team=team,
        tenant=world.tenant,
        kind=Connection.Kind.CLIENT_CREDENTIALS,
        client_id=world.team_app.client_id,
        client_secret=world.team_app.client_secret,
        bipsync_team_id=world.team_id,
        scopes=SCOPES,
    )


def run_sync(connection_id: Any) -> dict[str, Any]:
    """One run of the connection to its end; the categories' progress (:attr:`SyncRun.resources`)."""
    from bipsync_partner.connections.models import Connection
    from bipsync_partner.sync import engine, scheduling
    from bipsync_partner.sync.client import api_for
    from bipsync_partner.sync.models import SyncRun

    conn = Connection.objects.get(pk=connection_id)
    run = scheduling.request_sync(conn, publish=lambda *_: None).run
    outcome = engine.execute(run.pk, api_factory=api_for)
    assert outcome.action == engine.DONE, outcome
    run = SyncRun.objects.get(pk=run.pk)
    state: dict[str, Any] = run.resources.get("categories") or {}
    assert run.status == SyncRun.Status.SUCCEEDED, (run.status, run.error_message, run.notes)
    assert state.get("state") == "done", state
    return state


def raw_paging(connection_id: Any) -> dict[str, Any]:
    """Every page of the categories' query, in order, through the sync's own client and page
    size; nothing stored."""
    from django.conf import settings

    from bipsync_partner.connections.models import Connection
    from bipsync_partner.sync.client import api_for
    from bipsync_partner.sync.graphql import GraphqlClient
    from bipsync_partner.sync.resources import CATEGORIES

    conn = Connection.objects.get(pk=connection_id)
    client = GraphqlClient(api_for(conn))
    query = CATEGORIES.query(conn.scope_list)
    size = settings.BIPSYNC_GRAPHQL_PAGE_SIZE
    after: str | None = None
    pages = nodes = 0
    started = time.perf_counter()
    while True:
        listing = client.execute(query, {"first": size, "after": after})["categories"]
        pages += 1
        nodes += len(listing["edges"])
        info = listing["pageInfo"]
        if not info["hasNextPage"] or not info["endCursor"]:
            break
        after = info["endCursor"]
    seconds = time.perf_counter() - started
    return {
        "rows": nodes,
        "pages": pages,
        "seconds": round(seconds, 2),
        "per_second": nodes / seconds,
    }


def row_versions(connection_id: Any) -> dict[str, str]:
    """The xmin of each stored category of the connection's team and tenant: it changes exactly
    when a row is written."""
    from django.db import connection

    from bipsync_partner.connections.models import Connection
    from bipsync_partner.sync.models import SyncedCategory

    conn = Connection.objects.get(pk=connection_id)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT bipsync_id, xmin::text FROM {SyncedCategory._meta.db_table} "
            "WHERE team_id = %s AND tenant = %s",
            [conn.team_id, conn.tenant],
        )
        return dict(cursor.fetchall())


def bracketed(connection_id: Any, before: dict[str, Any]) -> dict[str, Any]:
    """The sync between the raw pass ``before`` and one right after it (the machine is shared),
    the ratio against the faster of the two. The pass after is the next round's pass before, so
    raw and sync alternate."""
    load_before = load()
    started = time.perf_counter()
    state = run_sync(connection_id)
    seconds = time.perf_counter() - started
    after = raw_paging(connection_id)
    raw = max(before["per_second"], after["per_second"])
    rate = state["rows"] / seconds
    return {
        "rows": state["rows"],
        "pages": state["pages"],
        "created": state["created"],
        "updated": state["updated"],
        "seconds": round(seconds, 2),
        "per_second": round(rate, 1),
        "raw_before_per_second": round(before["per_second"], 1),
        "raw_after_per_second": round(after["per_second"], 1),
        "ratio": round(rate / raw, 3),
        "load_average": load_before,
        "raw_after": after,
    }


def memory_child(connection_id: str) -> None:
    """In a fresh process: sync, then print the peak memory during the sync as JSON (as
    bench/sync_bench.py measures it: VmHWM reset just before, tracemalloc over the same span)."""
    import django

    django.setup()
    from django.db import connection

    connection.ensure_connection()
    Path("/proc/self/clear_refs").write_text("5")
    baseline = _status_kb("VmRSS")
    tracemalloc.start()
    state = run_sync(uuid.UUID(connection_id))
    _, traced_peak = tracemalloc.get_traced_memory()
    peak = _status_kb("VmHWM")
    print(
        json.dumps(
            {
                "rows": state["rows"],
                "rss_before_kb": baseline,
                "peak_rss_kb": peak,
                "growth_kb": peak - baseline,
                "traced_peak_kb": traced_peak // 1024,
            }
        )
    )


def measure_memory(env: dict[str, str], connection_id: Any) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "memory-child", str(connection_id)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def bench(
    sandbox: Sandbox, world: SandboxWorld, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, Any]:
    sandbox.set_api_rate_limit(0)  # measure paging, not the sandbox's per-token limit
    made = sandbox.generate_categories(world.tenant, args.categories, seed=1)
    say(f"generated {made['created']} categories in {made['seconds']} s")
    if args.what == "memory":
        return {"memory": bench_memory(sandbox, world, args, env)}

    rounds = []
    conn = make_connection(world, "Full0")
    raw = raw_paging(conn.pk)
    for n in range(args.rounds):
        conn = make_connection(world, f"Full{n}") if n else conn
        result = bracketed(conn.pk, raw)
        raw = result.pop("raw_after")
        say(f"full sync, round {n + 1}: {result}")
        rounds.append(result)
    ratios = sorted(r["ratio"] for r in rounds)
    full = {"rounds": rounds, "median_ratio": ratios[len(ratios) // 2], "target": ">= 0.7"}

    before = row_versions(conn.pk)
    again = bracketed(conn.pk, raw)
    again.pop("raw_after")
    after = row_versions(conn.pk)
    written = sum(1 for k, x in after.items() if before.get(k) != x) + len(
        before.keys() - after.keys()
    )
    unchanged = {**again, "rows_written": written, "target": "0 rows written"}
    say(f"unchanged re-sync: {unchanged}")
    memory = bench_memory(sandbox, world, args, env)
    return {"full_sync": full, "unchanged_resync": unchanged, "memory": memory}


def bench_memory(
    sandbox: Sandbox, world: SandboxWorld, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, Any]:
    """Peak memory of a first sync of a tenth of ``world``'s categories and of all of them,
    each in a fresh process."""
    small_world = make_world(sandbox)
    sandbox.generate_categories(small_world.tenant, args.categories // 10, seed=2)
    say("memory: 10x fewer categories, then the full set, each in a fresh process")
    mem_small = measure_memory(env, make_connection(small_world, "Small").pk)
    mem_big = measure_memory(env, make_connection(world, "Big").pk)
    memory = {
        "small": mem_small,
        "big": mem_big,
        "rss_ratio": round(mem_big["peak_rss_kb"] / mem_small["peak_rss_kb"], 3),
        "traced_ratio": round(mem_big["traced_peak_kb"] / max(1, mem_small["traced_peak_kb"]), 3),
        "target": "<= 1.2",
    }
    say(f"memory: {memory}")
    small_world.http.close()
    return memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["all", "memory", "memory-child"], default="all", nargs="?")
    parser.add_argument("connection", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--categories", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.what == "memory-child":
        memory_child(args.connection)
        return

    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}
    }
    with running_sandbox() as sandbox, partner_database() as db_name:
        world = make_world(sandbox)
        # Only the categories: the run's research scan finds an empty tenant, the other
        # resources are not read.
        env = {**partner_env(db_name, sandbox, world), "SYNC_RESOURCES": "categories"}
        setup_django(env)
        try:
            report["categories"] = bench(sandbox, world, args, env)
        finally:
            sandbox.reset_api_settings()
            world.http.close()
    say(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
