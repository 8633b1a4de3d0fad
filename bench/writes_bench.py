"""Writes to Bipsync against their limits, measured in the same run.

- ``rate``: NOTES notes (default 10,000) delivered by a real Celery worker (``-c CONCURRENCY -P
  prefork``), against a bare loop of the same ``POST /v2/research/note`` requests (same body
  shape, external ids included, one token) in CONCURRENCY threads. Interleaved in ROUNDS rounds
  (default 4): a bare loop of RAW/ROUNDS POSTs, then NOTES/ROUNDS notes queued in one transaction
  and delivered until every one is; a last bare loop closes. The ratio is the worker's pooled
  rate against the bare loops' pooled rate; each round's ratio (against the bare loops either
  side of it) and the ratio against the fastest bare loop are reported too. Target >= 0.8.
- ``memory``: an attachment of 500 MB against one of 5 MB, each delivered in a fresh process by
  the deliverer itself; peak resident memory from just before the delivery (``VmHWM`` after
  ``clear_refs``, as in sync_bench.py) and Python's traced peak (tracemalloc). Target ratio <= 1.2.

The sandbox runs under gunicorn (two sync workers, see ``main``) with its own database; the partner app gets a fresh database
``bench_partner_<pid>`` and a temporary MEDIA_ROOT; all are removed at the end.

    .venv/bin/python bench/writes_bench.py [rate|memory|all] [--notes 10000] [--raw 3000]
        [--rounds 4]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.sync_bench import (  # noqa: E402
    interleaved_ratios,
    load,
    partner_database,
    partner_env,
    running_sandbox,
    say,
    setup_django,
    start_worker,
)
from devtools.sandbox_server import Sandbox  # noqa: E402
from devtools.sandbox_world import SandboxWorld, make_world  # noqa: E402

MB = 1024 * 1024


def service_account(world: SandboxWorld, team_name: str) -> Any:
    """A team whose service account holds tokens from a real approval at the sandbox."""
    from datetime import timedelta

    from django.utils import timezone

    from accounts.models import Team
    from bipsync_partner.connections.models import Connection

    issued = world.connect(world.service_app)
    team = Team.objects.create(name=team_name, slug=team_name.lower())
    Connection.objects.create(
        team=team,
        tenant=world.tenant,
        kind=Connection.Kind.SERVICE_ACCOUNT,
        scopes=" ".join(world.service_app.scopes),
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        access_expires_at=timezone.now() + timedelta(seconds=issued["expires_in"]),
        refresh_expires_at=timezone.now() + timedelta(days=30),
    )
    return team, issued["access_token"]


# --- rate --------------------------------------------------------------------------------------


def raw_note_rate(
    world: SandboxWorld, token: str, count: int, concurrency: int, tag: str
) -> dict[str, Any]:
    """``count`` note POSTs in ``concurrency`` threads, each with its own keep-alive client."""
    url = world.api_base + "/v2/research/note"
    counter = iter(range(count))
    lock = threading.Lock()
    failures: list[int] = []

    def work() -> None:
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                response = http.post(
                    url,
                    json={
                        "user": world.admin.id,
                        "title": f"Raw note {index}",
                        "content": "<p>A bench note.</p>",
                        "externalIds": [{"source": "bench-raw", "value": f"{tag}-{index}"}],
                    },
                )
                if response.status_code >= 300:
                    failures.append(response.status_code)

    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    assert not failures, f"the bare loop got {len(failures)} failures: {failures[:5]}"
    return {
        "requests": count,
        "seconds": round(seconds, 2),
        "per_second": round(count / seconds, 1),
    }


def deliver_notes(
    team: Any, author: str, count: int, timeout: float, tag: str = "bench"
) -> dict[str, Any]:
    from django.db import transaction

    from bipsync_partner.writes import api
    from bipsync_partner.writes.models import Write

    with transaction.atomic():
        for index in range(count):
            api.create_note(
                team,
                external_id=f"{tag}-{index}",
                title=f"Bench note {index}",
                content="<p>A bench note.</p>",
                author=author,
            )
        # Timing starts at the commit: the deliveries are queued by it.
        started = time.perf_counter()
    deadline = started + timeout
    pending = Write.objects.filter(team=team, status__in=Write.PENDING)
    while pending.exists():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{pending.count()} notes still pending after {timeout} s")
        time.sleep(0.25)
    seconds = time.perf_counter() - started
    delivered = Write.objects.filter(
        team=team, status=Write.Status.DELIVERED, external_value__startswith=f"{tag}-"
    ).count()
    assert delivered == count, f"{count - delivered} notes were not delivered"
    return {"notes": count, "seconds": round(seconds, 2), "per_second": round(count / seconds, 1)}


def bench_rate(
    sandbox: Sandbox, world: SandboxWorld, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, Any]:
    """ROUNDS rounds of (a bare loop of RAW/ROUNDS POSTs, then NOTES/ROUNDS notes through the
    worker), and a last bare loop: the baseline is measured in the same minutes as the worker,
    so that the host's drift (the bare loop's rate moved from 97 to 140 POSTs/s within one
    bracketed run) weighs on both sides alike."""
    sandbox.set_api_rate_limit(0)  # measure writing, not the sandbox's per-token limit
    team, token = service_account(world, "BenchRate")
    worker = start_worker(env, args.concurrency, Path(tempfile.gettempdir()) / "writes-bench.log")
    bare: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    try:
        load_before = load()
        for round_ in range(args.rounds):
            bare.append(
                raw_note_rate(world, token, args.raw // args.rounds, args.concurrency, f"b{round_}")
            )
            say(f"bare loop {round_ + 1}: {bare[-1]}")
            runs.append(
                deliver_notes(
                    team, world.admin.id, args.notes // args.rounds, args.timeout, f"w{round_}"
                )
            )
            say(f"worker {round_ + 1}: {runs[-1]}")
        bare.append(raw_note_rate(world, token, args.raw // args.rounds, args.concurrency, "last"))
        say(f"bare loop {args.rounds + 1}: {bare[-1]}")
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(timeout=30)
    counts = sandbox.note_counts(world.tenant, "bipsync-partner")
    return {
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "bare_loops": bare,
        "worker_runs": runs,
        **interleaved_ratios(runs, "notes", bare, "requests"),
        "notes_at_the_sandbox": sum(counts.values()),
        "external_ids_with_more_than_one_note": sum(1 for n in counts.values() if n > 1),
        "load_average_before": load_before,
        "load_average_after": load(),
        "target": ">= 0.8",
    }


# --- memory ------------------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(write_id: str) -> None:
    """In a fresh process: deliver one attachment write, print peak memory as JSON. The kernel's
    high-water mark is reset just before (``echo 5 > /proc/self/clear_refs``), so start-up does
    not count."""
    import django

    django.setup()
    from django.db import connection

    from bipsync_partner.writes import delivery

    connection.ensure_connection()
    Path("/proc/self/clear_refs").write_text("5")
    baseline = _status_kb("VmRSS")
    tracemalloc.start()
    started = time.perf_counter()
    outcome = delivery.deliver(int(write_id))
    seconds = time.perf_counter() - started
    _, traced_peak = tracemalloc.get_traced_memory()
    peak = _status_kb("VmHWM")
    print(
        json.dumps(
            {
                "outcome": outcome,
                "seconds": round(seconds, 2),
                "rss_before_kb": baseline,
                "peak_rss_kb": peak,
                "growth_kb": peak - baseline,
                "traced_peak_kb": traced_peak // 1024,
            }
        )
    )


def stored_file(media: Path, name: str, size: int) -> str:
    digest = hashlib.sha256()
    path = media / name
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = os.urandom(MB)
    with path.open("wb") as handle:
        for index in range(size // MB):
            block = index.to_bytes(8, "big") + chunk[8:]
            digest.update(block)
            handle.write(block)
    return digest.hexdigest()


def measure(env: dict[str, str], write_id: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "memory-child", str(write_id)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def bench_memory(
    sandbox: Sandbox, world: SandboxWorld, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, Any]:
    from bipsync_partner.writes import api, delivery

    team, _ = service_account(world, "BenchMemory")
    media = Path(env["MEDIA_ROOT"])
    results: dict[str, Any] = {}
    for label, size in (("small", args.small_mb * MB), ("big", args.big_mb * MB)):
        checksum = stored_file(media, f"bench/{label}.bin", size)
        note = api.create_note(
            team,
            external_id=f"memory-{label}",
            title=f"{label} attachment",
            author=world.admin.id,
            attachments=[f"bench/{label}.bin"],
        )
        assert delivery.deliver(note.pk) == "delivered"
        [attachment] = note.dependents.all()
        say(f"memory: delivering the {size // MB} MB attachment in a fresh process")
        result = measure(env, attachment.pk)
        [stored] = sandbox.notes_by_external_id(world.tenant, "bipsync-partner", f"memory-{label}")
        [sent] = stored["attachments"]
        assert result["outcome"] == "delivered", result
        assert (sent["uploaded_size"], sent["sha256"]) == (size, checksum), sent
        results[label] = {"megabytes": size // MB, **result}
        (media / f"bench/{label}.bin").unlink()
    small, big = results["small"], results["big"]
    return {
        **results,
        "rss_ratio": round(big["peak_rss_kb"] / small["peak_rss_kb"], 3),
        "traced_ratio": round(big["traced_peak_kb"] / max(1, small["traced_peak_kb"]), 3),
        "load_average": load(),
        "target": "<= 1.2",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "what", choices=["rate", "memory", "all", "memory-child"], nargs="?", default="all"
    )
    parser.add_argument("write", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--notes", type=int, default=10_000)
    parser.add_argument("--raw", type=int, default=3_000, help="POSTs of the bare loops, in all")
    parser.add_argument("--rounds", type=int, default=4, help="bare loop, then worker, this often")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--small-mb", type=int, default=5)
    parser.add_argument("--big-mb", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=1200)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.what == "memory-child":
        memory_child(args.write)
        return
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}
    }
    media = Path(tempfile.mkdtemp(prefix="writes-bench-media-"))
    try:
        # Sync workers: each request goes to whichever of the sandbox's processes is free, as
        # behind a load balancer. With keep-alive (gthread), each client's connection stays on
        # the process that accepted it, and when the kernel gives both connections to one
        # process (at random, about one run in four) that run's rate halves: the bare loop
        # measured 66 against 113 POSTs/s for the same code.
        with running_sandbox(workers=2, threads=1) as sandbox, partner_database() as db_name:
            world = make_world(sandbox)
            env = {**partner_env(db_name, sandbox, world), "MEDIA_ROOT": str(media)}
            setup_django(env)
            try:
                if args.what in ("memory", "all"):
                    report["memory"] = bench_memory(sandbox, world, args, env)
                if args.what in ("rate", "all"):
                    report["rate"] = bench_rate(sandbox, world, args, env)
            finally:
                sandbox.reset_api_settings()
                world.http.close()
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(media)
    say(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
