"""Outbound events: the rate of the real deliverer against a bare loop, measured in the same run.

- The receiver: a threaded http.server in a process of its own on a free loopback port, answering
  every POST 204 (the same receiver for both sides).
- The deliverer: EVENTS events (default 3,000) recorded in one transaction through the outbox (one
  endpoint subscribed), delivered by a real Celery worker (``-c CONCURRENCY -P prefork``, queue
  ``events``) until every delivery is delivered; from the commit (which queues the tasks) to the
  last delivery. A burst of WARM_UP events (500) goes first, untimed (its figure is reported), so
  that the worker's processes have opened their database connections and HTTP clients.
- The bare loop: the same signed POSTs (the same bodies, ``standardwebhooks`` signatures, one
  kept-alive httpx client per process) from CONCURRENCY processes, nothing else: no claim, no
  address check, no outcome written. Bracketed: a bare loop right before and right after the
  deliverer, and the ratio against the faster of the two (the conservative choice). Target >= 0.8.

The partner app gets a fresh database ``bench_partner_<pid>``, removed at the end.

    .venv/bin/python bench/events_bench.py [--events 3000] [--raw 3000] [--concurrency 4]
        [--warm-up 500]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.sync_bench import (  # noqa: E402
    load,
    partner_database,
    partner_env,
    say,
    setup_django,
    start_worker,
)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(port_out: Any) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    port_out.put(server.server_address[1])
    server.serve_forever()


def start_receiver() -> tuple[multiprocessing.Process, str]:
    ports: Any = multiprocessing.Queue()
    process = multiprocessing.Process(target=_serve, args=(ports,), daemon=True)
    process.start()
    return process, f"http://127.0.0.1:{ports.get(timeout=10)}/hooks"


def _bare_share(url: str, secret: str, bodies: list[tuple[str, str]]) -> int:
    from standardwebhooks import Webhook

    webhook = Webhook(secret)
    sent = 0
    with httpx.Client(timeout=10) as client:
        for webhook_id, body in bodies:
            now = datetime.now(UTC)
            headers = {
                "webhook-id": webhook_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": webhook.sign(msg_id=webhook_id, timestamp=now, data=body),
                "content-type": "application/json",
            }
            response = client.post(url, content=body.encode(), headers=headers)
            sent += response.status_code == 204
    return sent


def bare_rate(url: str, secret: str, count: int, concurrency: int) -> dict[str, Any]:
    bodies = [
        (
            f"evt_bare{n:028d}",
            json.dumps(
                {
                    "type": "write.delivered",
                    "timestamp": datetime.now(UTC).isoformat(),
                    "data": {"write": {"id": f"w-{n}"}},
                },
                separators=(",", ":"),
            ),
        )
        for n in range(count)
    ]
    shares = [bodies[i::concurrency] for i in range(concurrency)]
    started = time.perf_counter()
    with multiprocessing.Pool(concurrency) as pool:
        sent = sum(pool.starmap(_bare_share, [(url, secret, share) for share in shares]))
    seconds = time.perf_counter() - started
    assert sent == count, f"{sent} of {count} bare POSTs answered 204"
    return {"count": count, "seconds": round(seconds, 2), "per_second": round(count / seconds, 1)}


def deliverer_rate(url: str, count: int) -> tuple[dict[str, Any], str]:
    from django.db import transaction

    from accounts.models import Team
    from bipsync_partner.events.models import EVENT_TYPES, Delivery, Endpoint
    from bipsync_partner.events.outbox import record
    from bipsync_partner.events.signing import new_secret

    team = Team.objects.create(name=f"Bench {time.monotonic_ns()}")
    secret = new_secret()
    endpoint = Endpoint.objects.create(
        team=team, url=url, event_types=list(EVENT_TYPES), secret=secret
    )
    with transaction.atomic():
        for n in range(count):
            record(team.pk, "write.delivered", {"write": {"id": f"w-{n}"}})
        # From the commit: recording the events is the writer's work, not the deliverer's.
        started = time.perf_counter()
    # Polled by the endpoint's id, not through a join: the poll shares the cores it measures.
    done = Delivery.objects.filter(endpoint=endpoint, status=Delivery.Status.DELIVERED)
    deadline = time.monotonic() + 600
    while done.count() < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done.count()} of {count} delivered in 600 s")
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    attempts = sum(Delivery.objects.filter(endpoint__team=team).values_list("attempts", flat=True))
    return {
        "count": count,
        "seconds": round(seconds, 2),
        "per_second": round(count / seconds, 1),
        "attempts": attempts,
    }, secret


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--raw", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--warm-up", type=int, default=500)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    receiver, url = start_receiver()
    try:
        with partner_database() as db_name:
            env = partner_env(db_name, None, None)
            env.update({"EVENTS_ALLOW_HTTP": "1", "EVENTS_ALLOW_PRIVATE_ADDRESSES": "1"})
            setup_django(env)
            worker = start_worker(
                env, args.concurrency, Path(f"/tmp/events-bench-{os.getpid()}.log")
            )
            try:
                from bipsync_partner.events.signing import new_secret

                say(f"bare loop before: {args.raw} signed POSTs, {args.concurrency} processes")
                before = bare_rate(url, new_secret(), args.raw, args.concurrency)
                say(f"  {before}")
                load_before = load()
                # Each of the worker's processes opens its database connection and its HTTP
                # client on its first run: a burst first, untimed, so that the figure is the rate
                # of a worker that has been running, as the bare loop's processes have no such
                # start to make beyond their own (counted) fork.
                warm_up, _ = deliverer_rate(url, args.warm_up)
                say(f"deliverer warm-up: {warm_up}")
                say(f"deliverer: {args.events} events, worker -c {args.concurrency}")
                real, _ = deliverer_rate(url, args.events)
                say(f"  {real}")
                after = bare_rate(url, new_secret(), args.raw, args.concurrency)
                say(f"bare loop after: {after}")
            finally:
                os.killpg(worker.pid, 15)
                worker.wait(timeout=30)
    finally:
        receiver.terminate()
    faster = max(before["per_second"], after["per_second"])
    result = {
        "machine": f"{os.cpu_count()} cores, {platform.python_version()}",
        "load": [load_before, load()],
        "concurrency": args.concurrency,
        "warm_up": warm_up,
        "deliverer": real,
        "bare_before": before,
        "bare_after": after,
        "ratio": round(real["per_second"] / faster, 3),
        "target": 0.8,
    }
    say(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
