"""Throughput of the Bipsync sandbox under its production server (gunicorn), on loopback.

Measures
- token refreshes per second: ``--chains`` concurrent refresh-token chains (one authorization-code
  grant each); every refresh sends the refresh token the previous one returned (rotation), so the
  server revokes the old pair and issues a new one each time, as Bipsync does [doc];
- research items per second: ``GET /v1/research?limit=100`` over ``--docs`` generated documents
  with service-account tokens (the partner integration's kind of token), by one sequential pager
  (what one sync sees) and by ``--streams`` concurrent pagers sharing out the pages.

Every measurement is bounded: at most ``--refreshes`` refreshes, at most ``--seconds`` seconds
(paging: three times that). The sandbox listens on 127.0.0.1 only, with its own fresh PostgreSQL
database (dropped at the end), started by ``python -m bipsync_sandbox serve`` exactly as
in production (gunicorn).

The load generator runs on the same two cores as the server, so it reports its own CPU use; it
speaks HTTP/1.1 with keep-alive through ``http.client`` (far cheaper per request than a
full-featured client) to leave the cores to the server.

    .venv/bin/python bench/sandbox_bench.py [--workers 3] [--threads 4] [--docs 100000] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools.sandbox_server import Sandbox, start_sandbox
from devtools.sandbox_world import SandboxWorld, make_world


class Loopback:
    """One keep-alive HTTP/1.1 connection to the sandbox."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.hostname not in {"127.0.0.1", "localhost", "::1"}:
            raise ValueError("The benchmark only talks to the loopback interface.")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        for attempt in (1, 2):
            try:
                self.conn.request(method, self.prefix + path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                data = response.read()
                return response.status, dict(response.getheaders()), data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed an idle keep-alive connection; reconnect once.
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


class ServerCpu:
    """CPU time used by the sandbox: its gunicorn processes and its PostgreSQL backends.

    On a shared machine throughput depends on what else runs; CPU time per operation does not, so
    the report gives both, and the throughput the two cores would give if the sandbox had them.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        assert sandbox.process is not None
        self.master = sandbox.process.pid  # ``serve`` execs gunicorn in place
        self.database = urlsplit(sandbox.database_url).path.lstrip("/")
        self.database_url = sandbox.database_url
        self.tick = os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _stat(pid: int) -> tuple[int, int] | None:
        """(parent pid, utime + stime in ticks) from /proc/<pid>/stat."""
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        fields = raw[raw.rindex(")") + 2 :].split()
        return int(fields[1]), int(fields[11]) + int(fields[12])

    def _pids(self) -> set[int]:
        pids = {self.master}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                stat = self._stat(int(entry.name))
                if stat is not None and stat[0] == self.master:
                    pids.add(int(entry.name))
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [self.database],
            ).fetchall()
        pids.update(int(pid) for (pid,) in rows)
        return pids

    def snapshot(self) -> dict[int, int]:
        result = {}
        for pid in self._pids():
            stat = self._stat(pid)
            if stat is not None:
                result[pid] = stat[1]
        return result

    def seconds_between(self, before: dict[int, int], after: dict[int, int]) -> float:
        return sum(ticks - before.get(pid, 0) for pid, ticks in after.items()) / self.tick


@dataclass
class Measurement:
    name: str
    unit: str
    concurrency: int
    operations: int = 0
    requests: int = 0
    seconds: float = 0.0
    client_cpu_seconds: float = 0.0
    server_cpu_seconds: float = 0.0
    errors: int = 0
    throttled: int = 0
    last_error: str = ""
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def per_second(self) -> float:
        return self.operations / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            "name": self.name,
            "unit": self.unit,
            "per_second": round(self.per_second, 1),
            "operations": self.operations,
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "concurrency": self.concurrency,
            "client_cpu_share": round(self.client_cpu_seconds / self.seconds, 2)
            if self.seconds
            else None,
            "server_cpu_ms_per_request": round(self.server_cpu_seconds * 1000 / self.requests, 2)
            if self.requests
            else None,
            # Throughput if the sandbox (server + database) had both cores to itself.
            "per_second_on_2_idle_cores": round(self.operations * 2 / self.server_cpu_seconds, 1)
            if self.server_cpu_seconds
            else None,
            "p50_ms": round(statistics.median(lat), 1) if lat else None,
            "p95_ms": round(lat[max(0, int(len(lat) * 0.95) - 1)], 1) if lat else None,
            "errors": self.errors,
            "throttled": self.throttled,
            "last_error": self.last_error or None,
        }


@contextlib.contextmanager
def running_sandbox(workers: int, threads: int) -> Iterator[Sandbox]:
    generator = start_sandbox(workers=workers, threads=threads)
    sandbox = next(generator)
    try:
        yield sandbox
    finally:
        with contextlib.suppress(StopIteration):
            next(generator)


def _timed_threads(
    result: Measurement,
    count: int,
    target: Callable[[int, threading.Barrier], None],
    meter: ServerCpu,
) -> None:
    """Run ``count`` threads; the clock starts when all of them wait on the barrier they get."""
    clock: dict[str, float] = {}
    server: dict[str, dict[int, int]] = {}

    def start_clock() -> None:
        server["before"] = meter.snapshot()
        clock["start"] = time.perf_counter()
        clock["cpu"] = time.process_time()

    ready = threading.Barrier(count, action=start_clock)
    threads = [threading.Thread(target=target, args=(n, ready), daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - clock["start"]
    result.client_cpu_seconds = time.process_time() - clock["cpu"]
    result.server_cpu_seconds = meter.seconds_between(server["before"], meter.snapshot())


def bench_refreshes(
    world: SandboxWorld, *, chains: int, limit: int, seconds: float, warmup: int = 3
) -> Measurement:
    refresh_tokens = [world.connect(world.user_app)["refresh_token"] for _ in range(chains)]
    result = Measurement("token refreshes", "refreshes", chains)
    lock = threading.Lock()
    budget = {"left": limit}
    token_path = world.token_url[len(world.sandbox.base_url) :]
    auth = world.user_app.auth

    def refresh(conn: Loopback, token: str) -> str:
        body = urlencode({"grant_type": "refresh_token", "refresh_token": token, **auth}).encode()
        status, _, data = conn.request(
            "POST",
            token_path,
            body,
            {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        )
        if status != 200:
            raise RuntimeError(f"refresh answered {status}: {data[:200]!r}")
        new: str = json.loads(data)["refresh_token"]
        return new

    def chain(index: int, ready: threading.Barrier) -> None:
        token = refresh_tokens[index]
        conn = Loopback(world.sandbox.base_url)
        try:
            for _ in range(warmup):  # warm the connection and the workers; not counted
                token = refresh(conn, token)
            ready.wait()
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                with lock:
                    if budget["left"] <= 0:
                        return
                    budget["left"] -= 1
                began = time.perf_counter()
                try:
                    token = refresh(conn, token)
                except RuntimeError as exc:
                    with lock:
                        result.errors += 1
                        result.last_error = str(exc)
                    return
                elapsed = (time.perf_counter() - began) * 1000
                with lock:
                    result.operations += 1
                    result.requests += 1
                    result.latencies_ms.append(elapsed)
        finally:
            conn.close()

    _timed_threads(result, chains, chain, ServerCpu(world.sandbox))
    return result


def bench_paging(
    world: SandboxWorld, *, streams: int, total: int, seconds: float, page_size: int = 100
) -> Measurement:
    tokens = [world.connect(world.service_app)["access_token"] for _ in range(streams)]
    offsets = list(range(0, total, page_size))
    label = f"research items, {streams} pager{'s' if streams > 1 else ''}"
    result = Measurement(label, "items", streams)
    lock = threading.Lock()
    research_path = world.api_base[len(world.sandbox.base_url) :] + "/v1/research"

    def pager(index: int, ready: threading.Barrier) -> None:
        headers = {"Authorization": f"Bearer {tokens[index]}", "Accept": "application/json"}
        conn = Loopback(world.sandbox.base_url)
        try:
            conn.request("GET", research_path + "?limit=1", headers=headers)  # warm-up
            ready.wait()
            deadline = time.perf_counter() + seconds
            for offset in offsets[index::streams]:
                if time.perf_counter() > deadline:
                    return
                query = urlencode({"offset": offset, "limit": page_size})
                while True:
                    began = time.perf_counter()
                    status, response_headers, data = conn.request(
                        "GET", f"{research_path}?{query}", headers=headers
                    )
                    elapsed = (time.perf_counter() - began) * 1000
                    if status != 429:
                        break
                    with lock:
                        result.throttled += 1
                    time.sleep(float(response_headers.get("Retry-After", "1")))
                with lock:
                    result.requests += 1
                    if status == 200:
                        result.operations += len(json.loads(data)["results"])
                        result.latencies_ms.append(elapsed)
                    else:
                        result.errors += 1
                        result.last_error = f"{status}: {data[:200]!r}"
        finally:
            conn.close()

    _timed_threads(result, streams, pager, ServerCpu(world.sandbox))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (2 cores: 3)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (gthread)")
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--refreshes", type=int, default=10_000, help="upper bound")
    parser.add_argument("--chains", type=int, default=8, help="concurrent refresh chains")
    parser.add_argument("--streams", type=int, default=4, help="concurrent pagers")
    parser.add_argument("--seconds", type=float, default=15.0, help="bound per measurement")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--only", choices=("refresh", "research"), default=None)
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=10_000,
        help="per-token REST requests per second while paging (the limiter still runs on every "
        "request; the sandbox's default of 100/s would make a single fast pager wait)",
    )
    args = parser.parse_args()

    load_before = os.getloadavg()
    with running_sandbox(args.workers, args.threads) as sandbox:
        world = make_world(sandbox)
        try:
            results: list[Measurement] = []
            generated: dict[str, Any] = {"seconds": None}
            if args.only != "research":
                results.append(
                    bench_refreshes(
                        world, chains=args.chains, limit=args.refreshes, seconds=args.seconds
                    )
                )
            if args.only != "refresh":
                generated = sandbox.generate_research(
                    world.tenant,
                    world.team_id,
                    args.docs,
                    seed=1,
                    share_with=[world.service_app.client_id],
                    private_fraction=0.0,
                )
                print(f"generated {generated['created']} documents in {generated['seconds']} s")
                sandbox.set_api_rate_limit(args.rate_limit, window=1)
                for streams in (1, args.streams):
                    results.append(
                        bench_paging(
                            world, streams=streams, total=args.docs, seconds=args.seconds * 3
                        )
                    )
        finally:
            world.http.close()

    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "server": {
            "command": "python -m bipsync_sandbox serve",
            "workers": args.workers,
            "threads": args.threads,
            "worker_class": "gthread" if args.threads > 1 else "sync",
        },
        "docs": args.docs,
        "rest_rate_limit_per_token": args.rate_limit,
        "generation_seconds": generated["seconds"],
        "results": [r.summary() for r in results],
    }
    for s in report["results"]:
        print(
            f"{s['name']:<28} {s['per_second']:>9.1f} {s['unit']}/s  ({s['operations']} in "
            f"{s['seconds']} s, concurrency {s['concurrency']}, p50 {s['p50_ms']} ms, "
            f"p95 {s['p95_ms']} ms, client CPU {s['client_cpu_share']} core, errors {s['errors']}, "
            f"throttled {s['throttled']})"
        )
        print(
            f"{'':<28} server + database CPU {s['server_cpu_ms_per_request']} ms per request: "
            f"{s['per_second_on_2_idle_cores']} {s['unit']}/s on 2 idle cores"
        )
        if s["last_error"]:
            print(f"  last error: {s['last_error']}")
    print(f"load average before {load_before}, after {report['machine']['load_average_after']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
