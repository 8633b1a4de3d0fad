"""Outbound events: the rate of the real deliverer against a bare loop, measured in the same run.

- The receiver: a threaded http.server in a process of its own on a free loopback port, answering
  every POST 204 (the same receiver for both sides).
- The deliverer: EVENTS/ROUNDS events at a time recorded in one transaction through the outbox
  (one endpoint subscribed), delivered by a real Celery worker (``-c CONCURRENCY -P prefork``,
  queue ``events``) until none is pending; from the commit (which queues the tasks) to the last
  delivery. A burst of WARM_UP events (500) goes first, untimed (its figure is reported), so that
  the worker's processes have opened their database connections and HTTP clients.
- The bare loop: the same signed POSTs (bodies of the same form, ``standardwebhooks``
  signatures, one kept-alive httpx client per process) from CONCURRENCY processes, forked and
  each with its client open before anything is timed, nothing else: no claim, no address check,
  no outcome written.
- Interleaved in ROUNDS rounds (default 4): a bare loop of RAW/ROUNDS POSTs, then a burst of
  EVENTS/ROUNDS events through the deliverer; a last bare loop closes. The ratio is the
  deliverer's pooled rate against the bare loops' pooled rate, so that the host's drift within a
  run weighs on both alike; each round's ratio (against the bare loops either side of it) and
  the ratio against the fastest bare loop are reported too. ``--rounds 1`` is one burst of all
  EVENTS between two bare loops. Target >= 0.8.

The partner app gets a fresh database ``bench_partner_<pid>``, removed at the end.

    .venv/bin/python bench/events_bench.py [--events 3000] [--raw 3000] [--concurrency 4]
        [--warm-up 500] [--rounds 4] [--answer-ms 0]

``--answer-ms`` makes the receiver take that long to answer each POST, as a real endpoint does:
the runs then wait on the network rather than share the cores, and how evenly they share a
burst is what the figure shows.
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
    interleaved_ratios,
    load,
    partner_database,
    partner_env,
    say,
    setup_django,
    start_worker,
)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    #: Seconds the receiver takes to answer (``--answer-ms``): a real endpoint's latency.
    delay = 0.0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.delay:
            time.sleep(self.delay)
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(port_out: Any, delay: float) -> None:
    _Handler.delay = delay
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    port_out.put(server.server_address[1])
    server.serve_forever()


def start_receiver(delay: float = 0.0) -> tuple[multiprocessing.Process, str]:
    ports: Any = multiprocessing.Queue()
    process = multiprocessing.Process(target=_serve, args=(ports, delay), daemon=True)
    process.start()
    return process, f"http://127.0.0.1:{ports.get(timeout=10)}/hooks"


#: Each bare loop process's client, made once (``_open_client``) and kept across rounds, as each
#: worker process keeps its own.
_client: httpx.Client | None = None


def _open_client(url: str) -> None:
    """A bare loop process's start, before anything is timed (as the worker's warm-up burst
    does for the worker's processes): its imports, its client and a first connection. Made at
    each round's start, the client's TLS context alone cost 22-37 ms a process, and the first
    round's imports 100-160 ms, inside the bare loop's timer."""
    global _client
    from standardwebhooks import Webhook

    _client = httpx.Client(timeout=10)
    _client.post(url, content=b"{}", headers={"content-type": "application/json"})
    del Webhook


def _bare_share(url: str, secret: str, bodies: list[tuple[str, str]]) -> int:
    from standardwebhooks import Webhook

    assert _client is not None, "the pool's initializer opens the client"
    webhook = Webhook(secret)
    sent = 0
    for webhook_id, body in bodies:
        now = datetime.now(UTC)
        headers = {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": webhook.sign(msg_id=webhook_id, timestamp=now, data=body),
            "content-type": "application/json",
        }
        response = _client.post(url, content=body.encode(), headers=headers)
        sent += response.status_code == 204
    return sent


def bare_rate(
    pool: Any, url: str, secret: str, count: int, concurrency: int, tag: str
) -> dict[str, Any]:
    bodies = [
        (
            f"evt_{tag}{n:028d}",
            # Spaced as PostgreSQL prints the stored payload, which the deliverer sends.
            json.dumps(
                {
                    "data": {"write": {"id": f"w-{n}"}},
                    "type": "write.delivered",
                    "timestamp": datetime.now(UTC).isoformat(),
                }
            ),
        )
        for n in range(count)
    ]
    shares = [bodies[i::concurrency] for i in range(concurrency)]
    started = time.perf_counter()
    sent = sum(pool.starmap(_bare_share, [(url, secret, share) for share in shares]))
    seconds = time.perf_counter() - started
    assert sent == count, f"{sent} of {count} bare POSTs answered 204"
    return {"count": count, "seconds": round(seconds, 2), "per_second": round(count / seconds, 1)}


def deliverer_rate(url: str, count: int) -> tuple[dict[str, Any], str]:
    from django.db import connection, transaction

    from accounts.models import Team
    from bipsync_partner.events.models import EVENT_TYPES, Delivery, Endpoint
    from bipsync_partner.events.outbox import record_each
    from bipsync_partner.events.signing import new_secret

    team = Team.objects.create(name=f"Bench {time.monotonic_ns()}")
    secret = new_secret()
    endpoint = Endpoint.objects.create(
        team=team, url=url, event_types=list(EVENT_TYPES), secret=secret
    )
    ended: list[float] = []
    with transaction.atomic():
        # From the end of the commit: recording the events, and the commit's flush of them, is
        # the writer's work, not the deliverer's. Registered first, this runs before the nudge
        # that starts the deliverer.
        transaction.on_commit(lambda: ended.append(time.perf_counter()))
        # One look-up of the endpoints and one insert of each kind of row for all of them, as a
        # group of writes recorded together does (one record() per event took 16 s for 10,000
        # on this host, three quarters of the bench's time, outside the timer either way).
        record_each(
            team.pk, "write.delivered", lambda: [{"write": {"id": f"w-{n}"}} for n in range(count)]
        )
        committing = time.perf_counter()
    started = ended[0]
    # The poll shares the cores it measures: it asks whether any delivery is still pending (a
    # probe of the claim's partial index), not how many were delivered (a count of up to 10,000
    # rows 50 times a second); the count is read once, at the end. Every 20 ms: at 50 ms the
    # poll's own lag (25 ms on average) was 3 % of a burst of 2,500.
    # The probe is a plain statement: built by the ORM it cost 0.6 ms of CPU, 2-4 % of the
    # cores during a burst.
    probe = (
        f"SELECT EXISTS (SELECT FROM {Delivery._meta.db_table}"
        f" WHERE {Delivery._meta.get_field('endpoint').column} = %s AND status = %s)"
    )
    deadline = time.monotonic() + 600
    with connection.cursor() as cursor:
        while True:
            cursor.execute(probe, [endpoint.pk, Delivery.Status.PENDING.value])
            if not cursor.fetchone()[0]:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"deliveries of {count} still pending after 600 s")
            time.sleep(0.02)
    seconds = time.perf_counter() - started
    done = Delivery.objects.filter(endpoint=endpoint, status=Delivery.Status.DELIVERED).count()
    assert done == count, f"{done} of {count} delivered"
    attempts = sum(Delivery.objects.filter(endpoint__team=team).values_list("attempts", flat=True))
    return {
        "count": count,
        "seconds": round(seconds, 2),
        "per_second": round(count / seconds, 1),
        "commit_seconds": round(started - committing, 3),
        "attempts": attempts,
    }, secret


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--raw", type=int, default=3000, help="bare POSTs, in all")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--warm-up", type=int, default=500)
    parser.add_argument(
        "--rounds", type=int, default=4, help="bare loop, then deliverer, this often"
    )
    parser.add_argument(
        "--answer-ms", type=float, default=0.0, help="the receiver's latency per POST"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    receiver, url = start_receiver(args.answer_ms / 1000)
    bare: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    try:
        with partner_database() as db_name:
            env = partner_env(db_name, None, None)
            env.update({"EVENTS_ALLOW_HTTP": "1", "EVENTS_ALLOW_PRIVATE_ADDRESSES": "1"})
            setup_django(env)
            worker = start_worker(
                env, args.concurrency, Path(f"/tmp/events-bench-{os.getpid()}.log")
            )
            # The bare loop's processes are forked once, before anything is timed, as the
            # worker's are: each round times only their POSTs.
            pool = multiprocessing.Pool(args.concurrency, _open_client, (url,))
            try:
                from bipsync_partner.events.signing import new_secret

                load_before = load()
                # Each of the worker's processes opens its database connection and its HTTP
                # client on its first run: a burst first, untimed, so that the figure is the rate
                # of a worker that has been running.
                warm_up, _ = deliverer_rate(url, args.warm_up)
                say(f"deliverer warm-up: {warm_up}")
                raw, events = args.raw // args.rounds, args.events // args.rounds
                for round_ in range(args.rounds):
                    bare.append(
                        bare_rate(pool, url, new_secret(), raw, args.concurrency, f"b{round_}")
                    )
                    say(f"bare loop {round_ + 1}: {bare[-1]}")
                    runs.append(deliverer_rate(url, events)[0])
                    say(f"deliverer {round_ + 1} (worker -c {args.concurrency}): {runs[-1]}")
                bare.append(bare_rate(pool, url, new_secret(), raw, args.concurrency, "last"))
                say(f"bare loop {args.rounds + 1}: {bare[-1]}")
            finally:
                pool.terminate()
                os.killpg(worker.pid, 15)
                worker.wait(timeout=30)
    finally:
        receiver.terminate()
    result = {
        "machine": f"{os.cpu_count()} cores, {platform.python_version()}",
        "load": [load_before, load()],
        "concurrency": args.concurrency,
        "answer_ms": args.answer_ms,
        "rounds": args.rounds,
        "warm_up": warm_up,
        "bare_loops": bare,
        "deliverer_runs": runs,
        **interleaved_ratios(runs, "count", bare, "count"),
        "target": 0.8,
    }
    say(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
