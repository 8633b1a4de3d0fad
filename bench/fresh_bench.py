"""New research within a minute, for a fraction of a full scan's requests.

A tenant of 100,000 documents is synced once by a full scan (its requests counted at the
sandbox). Then 100 new notes are created at Bipsync at random moments over ``--polls`` poll
intervals of ``--interval`` seconds (BIPSYNC_NEW_RESEARCH_POLL_SECONDS, 30 by default), and the
poll (``bipsync_partner.sync.fresh.poll``, what beat's task runs) is called once per interval.
Measured in the same run: the poll's requests against the full scan's (target <= 2 %), and for
each note the time from its creation to the end of the poll that stored it (target <= 60 s).

    .venv/bin/python bench/fresh_bench.py [--docs 100000] [--notes 100] [--polls 4] [--interval 30]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sync_bench  # noqa: E402
from sync_bench import (  # noqa: E402
    environment,
    make_connection,
    make_world,
    partner_database,
    partner_env,
    run_sync,
    say,
    setup_django,
)

SCOPES = ["rest_api:read", "rest_api:fields:read", "rest_api:write", "research:read", "users:read"]


def requests_of(sandbox: Any, client_id: str, method: str) -> int:
    routes = sandbox.counters(client_id).get(client_id, {}).get("api", {})
    return sum(
        sum(outcomes.values()) for route, outcomes in routes.items() if route.startswith(method)
    )


def team_token(world: Any, app: dict[str, Any]) -> str:
    response = httpx.post(
        world.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": app["client_id"],
            "client_secret": app["client_secret"],
            "scope": f"rest_api:read rest_api:write team_{world.team_id}",
        },
        timeout=30,
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def bench(sandbox: Any, world: Any, args: argparse.Namespace) -> dict[str, Any]:
    from bipsync_partner.sync import fresh
    from bipsync_partner.sync.models import ResearchDocument

    sandbox.set_api_rate_limit(0)
    say(f"generating {args.docs} documents")
    sandbox.generate_research(world.tenant, world.team_id, args.docs, seed=7)
    app = sandbox.create_application(
        name="bench-fresh",
        client_id=f"bench-fresh-{world.tenant}",
        grant_types=["client_credentials"],
        scopes=SCOPES,
        team_id=world.team_id,
        tenants=[world.tenant],
    )
    conn = make_connection("Fresh", world, app)
    conn.scopes = " ".join(SCOPES)
    conn.save(update_fields=["scopes"])
    client_id = app["client_id"]

    say("full scan")
    started = time.perf_counter()
    run = run_sync(conn.pk)
    scan_seconds = time.perf_counter() - started
    scan_requests = requests_of(sandbox, client_id, "GET ")
    say(f"full scan: {run.seen_count} documents, {scan_requests} requests, {scan_seconds:.1f} s")

    token = team_token(world, app)
    rng = random.Random(8)
    per_poll = [
        args.notes // args.polls + (1 if n < args.notes % args.polls else 0)
        for n in range(args.polls)
    ]
    created: dict[str, float] = {}
    visible: dict[str, float] = {}
    poll_requests = 0
    polls: list[dict[str, Any]] = []
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
        for n, count in enumerate(per_poll):
            window_start = time.monotonic()
            moments = sorted(rng.uniform(0, args.interval * 0.95) for _ in range(count))
            for moment in moments:
                time.sleep(max(0.0, window_start + moment - time.monotonic()))
                response = http.post(
                    world.api_base + "/v2/research/note",
                    json={"user": world.admin.id, "title": f"Fresh note {len(created)}"},
                )
                response.raise_for_status()
                created[response.json()["id"]] = time.monotonic()
            time.sleep(max(0.0, window_start + args.interval - time.monotonic()))
            before = requests_of(sandbox, client_id, "POST /v1/graphql")
            polled = fresh.poll(conn.pk)
            done = time.monotonic()
            used = requests_of(sandbox, client_id, "POST /v1/graphql") - before
            poll_requests += used
            stored = set(
                ResearchDocument.objects.filter(bipsync_id__in=list(created)).values_list(
                    "bipsync_id", flat=True
                )
            )
            for bid in stored - set(visible):
                visible[bid] = done
            polls.append({"created": polled.created, "requests": used, "skipped": polled.skipped})
            say(f"poll {n + 1}: {polls[-1]}")
    latencies = sorted(visible[bid] - created[bid] for bid in visible)
    return {
        "documents": run.seen_count,
        "full_scan": {"requests": scan_requests, "seconds": round(scan_seconds, 1)},
        "new_notes": len(created),
        "visible": len(visible),
        "polls": polls,
        "poll_requests": poll_requests,
        "request_ratio_percent": round(100 * poll_requests / scan_requests, 3),
        "latency_seconds": {
            "median": round(latencies[len(latencies) // 2], 1) if latencies else None,
            "max": round(latencies[-1], 1) if latencies else None,
        },
        "interval_seconds": args.interval,
        "targets": {"request_ratio_percent": "<= 2", "max_latency_seconds": "<= 60"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--notes", type=int, default=100)
    parser.add_argument("--polls", type=int, default=4)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with environment(False) as sandbox, partner_database() as db_name:
        world = make_world(sandbox)
        setup_django(partner_env(db_name, sandbox, world))
        try:
            report = bench(sandbox, world, args)
        finally:
            sandbox.reset_api_settings()
            world.http.close()
    say(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


assert sync_bench  # the helpers above come from the sync bench (one environment, one setup)

if __name__ == "__main__":
    main()
