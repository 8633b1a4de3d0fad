"""Proactive token refresh: find connections that will need a refresh soon and queue one each.

Beat fires :func:`sweep` every minute (settings.CELERY_BEAT_SCHEDULE). A connection is due when
its access token expires within ``REFRESH_ACCESS_WINDOW_SECONDS`` (the token service's own
``due_for_refresh`` query, which also brings back failing connections whose back-off has passed),
or when its refresh token lapses within ``REFRESH_REFRESH_WINDOW_SECONDS`` (Bipsync rotates on
every refresh [doc], so refreshing early keeps an idle connection alive).

The sweep queues the claimed connections in batches of up to ``REFRESH_BATCH_SIZE`` per tenant
(one task refreshes them one after the other, each in its own transaction under its own row
lock): a Celery task costs a worker several milliseconds of its own, more than the rest of a
refresh, so one task per refresh would cap the sweep below Bipsync's rate (bench/README.md).

Exactly one refresh per rotation, whatever the number of sweeps, workers and web requests:

1. the sweep claims a Redis marker per (connection, version) with ``SET NX`` before queuing, so
   two sweeps running at once (or a sweep while the previous refresh is still queued) queue each
   connection once; the marker is released when the task ends and expires if a worker dies,
   early enough for a later sweep to queue the refresh again before the token lapses
   (:func:`marker_ttl`);
2. the token service takes the row lock without waiting (``SKIP LOCKED``: whoever holds it is
   refreshing right now) and, under it, does nothing if the version moved (someone rotated) or
   the connection is no longer due;
3. so even two tasks that got past 1 cause one rotation (the lock and the re-read).

Around each refresh: the tenant's "not before" gate (a ``Retry-After`` seen by any worker) is
honoured, and a per-tenant semaphore bounds concurrent refreshes at one tenant (a batch holds
one slot while it runs). Failures are the
token service's to record (consecutive failures, ``next_retry_at`` with jitter, ``needs_reconnect``
and the admins' email on ``invalid_grant``); the sweep only skips connections still backing off.
An error the token service did not expect is one connection's failure too: :mod:`failures`
records it on that connection and the rest of the batch goes on. While the tenant's circuit
breaker is open (:mod:`breaker`), a batch stops before its next request and goes back on the
queue for when the cool-down ends, like a batch that met a ``Retry-After``.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection as db_connection
from django.db import models, transaction
from django.utils import timezone

from bipsync_partner.connections import breaker, failures
from bipsync_partner.connections.models import Connection
from bipsync_partner.coordination import OnceKeys, TenantGate, TenantSemaphore
from bipsync_partner.oauth import OAuthError
from bipsync_partner.ops import metrics
from bipsync_partner.ops.context import bound
from bipsync_partner.ops.interpreter import switch_interval

log = logging.getLogger(__name__)


def queued_markers() -> OnceKeys:
    return OnceKeys("refresh", ttl_seconds=settings.REFRESH_QUEUED_TTL_SECONDS)


def marker_name(connection_id: UUID | str, version: int) -> str:
    return queued_markers().name(connection_id, version)


def access_window() -> timedelta:
    return timedelta(seconds=settings.REFRESH_ACCESS_WINDOW_SECONDS)


def refresh_window() -> timedelta:
    return timedelta(seconds=settings.REFRESH_REFRESH_WINDOW_SECONDS)


def due_connections(now: datetime) -> models.QuerySet[Connection]:
    """Connections a refresh should be queued for now."""
    return Connection.objects.due_for_refresh(
        now=now, horizon=access_window(), refresh_horizon=refresh_window()
    )


def jitter_for(expires_at: datetime | None, now: datetime) -> float:
    """A random delay that spreads refreshes over the jitter window without letting a token
    lapse: never later than the token service's leeway (a minute by default) before the access
    token expires, where a caller would refresh it inline anyway."""
    from bipsync_partner.connections import tokens

    ceiling = float(settings.REFRESH_JITTER_SECONDS)
    if expires_at is not None:
        margin = tokens.access_leeway().total_seconds()
        ceiling = min(ceiling, max(0.0, (expires_at - now).total_seconds() - margin))
    return random.uniform(0.0, ceiling) if ceiling > 0 else 0.0


def sweep_interval() -> float:
    """Seconds between two refresh sweeps (beat's schedule)."""
    entry = settings.CELERY_BEAT_SCHEDULE.get("refresh-sweep", {})
    return float(entry.get("schedule", 60.0))  # type: ignore[arg-type]


def marker_ttl(expires_at: datetime | None, now: datetime) -> int:
    """How long a connection's "queued" marker may hold back the next sweeps.

    A worker killed with SIGKILL takes its prefetched and countdown messages with it, and with
    late acknowledgement the broker gives them back only after its visibility timeout (an
    hour). The marker is then all that stands between the connection and a new message, so it
    must expire early enough for a later sweep to queue the refresh and for the task to run
    before the token service's leeway begins: two sweep intervals plus the leeway before the
    access token expires. ``REFRESH_QUEUED_TTL_SECONDS`` stays the upper bound; ten seconds the
    lower one (a connection queued that late gets duplicates at worst, which the version check
    and the row lock make harmless).
    """
    from bipsync_partner.connections import tokens

    ceiling = int(settings.REFRESH_QUEUED_TTL_SECONDS)
    if expires_at is None:
        return ceiling
    room = (expires_at - now).total_seconds()
    room -= tokens.access_leeway().total_seconds() + 2 * sweep_interval()
    return max(10, min(ceiling, int(room)))


@dataclass(frozen=True)
class RefreshSweep:
    due: int
    queued: int
    already_queued: int


#: A (connection id, version) pair: what a refresh task is given.
Item = tuple[str, int]
#: ``enqueue(tenant, items, countdown)`` publishes one batch task.
Enqueue = Callable[[str, list[Item], float], None]
_Row = tuple[UUID, int, str, datetime | None]


def _chunks(rows: Iterable[_Row], size: int) -> Iterator[list[_Row]]:
    chunk: list[_Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def batch_size() -> int:
    return max(1, int(settings.REFRESH_BATCH_SIZE))


def sweep(enqueue: Enqueue, *, now: datetime | None = None) -> RefreshSweep:
    """Queue one refresh per due connection that is not queued already, in batches per tenant.

    ``enqueue(tenant, items, countdown)`` publishes a batch; it is called through
    ``transaction.on_commit`` (at once outside a transaction).
    """
    now = now or timezone.now()
    markers = queued_markers()
    rows = (
        due_connections(now)
        .order_by("access_expires_at", "id")
        .values_list("id", "version", "tenant", "access_expires_at")
        .iterator(chunk_size=settings.REFRESH_SWEEP_BATCH)
    )
    due = queued = already = 0
    for chunk in _chunks(rows, settings.REFRESH_SWEEP_BATCH):
        due += len(chunk)
        names = [markers.name(conn_id, version) for conn_id, version, _, _ in chunk]
        ttls = [marker_ttl(expires_at, now) for *_, expires_at in chunk]
        by_tenant: dict[str, list[tuple[_Row, str]]] = {}
        for row, name, claimed in zip(chunk, names, markers.claim_many(names, ttls), strict=True):
            if claimed:
                by_tenant.setdefault(row[2], []).append((row, name))
            else:
                already += 1
        for tenant, claimed_rows in by_tenant.items():
            for start in range(0, len(claimed_rows), batch_size()):
                batch = claimed_rows[start : start + batch_size()]
                queued += len(batch)
                _queue_batch(enqueue, tenant, batch, now)
    log.info("Refresh sweep: %d due, %d queued, %d already queued", due, queued, already)
    return RefreshSweep(due=due, queued=queued, already_queued=already)


def _queue_batch(
    enqueue: Enqueue, tenant: str, batch: list[tuple[_Row, str]], now: datetime
) -> None:
    items = [(str(row[0]), row[1]) for row, _ in batch]
    # Rows come ordered by expiry, so the first one bounds how long the batch may wait.
    countdown = jitter_for(batch[0][0][3], now)
    names = [name for _, name in batch]
    transaction.on_commit(functools.partial(_publish, enqueue, tenant, items, countdown, names))


def _publish(
    enqueue: Enqueue, tenant: str, items: list[Item], countdown: float, names: list[str]
) -> None:
    try:
        enqueue(tenant, items, countdown)
    except Exception:
        # Without the message the markers would hold the connections back until they expire.
        queued_markers().release(names)
        raise


# --- refreshing ------------------------------------------------------------------------------


def _tenant_slot(tenant: str) -> TenantSemaphore:
    return TenantSemaphore(
        "refresh",
        tenant,
        limit=settings.REFRESH_TENANT_CONCURRENCY,
        lease_seconds=settings.REFRESH_TASK_TIME_LIMIT,
    )


def _take_slot(slot: TenantSemaphore) -> bool:
    for attempt in range(5):
        if slot.acquire():
            return True
        time.sleep(0.05 * (attempt + 1))
    return False


class TenantWaiting(Exception):
    """Raised instead of calling Bipsync while the tenant asked us to wait; the token service
    rolls its transaction back, so nothing is written and the connection stays queued."""


class _Turn:
    """A batch's permission to call Bipsync: one request at a time (the batch holds one of the
    tenant's concurrency slots), and none while the tenant's gate is closed. The gate is read
    before each request, so a ``Retry-After`` seen by any worker stops this batch's next
    request; a 429 seen by this batch closes the turn before another thread can take it.
    """

    def __init__(self, gate: TenantGate) -> None:
        self.gate = gate
        self.closed = False
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        # The gate is read before waiting for the turn, so that its round trip to Redis is not
        # part of the one-request-at-a-time path; what another worker learns in the meantime
        # (at most one request's time) is as good as simultaneous.
        if self.closed or self.gate.remaining() > 0:
            self.closed = True
            raise TenantWaiting
        self._lock.acquire()
        if self.closed:  # a 429 of this batch's request that held the turn
            self._lock.release()
            raise TenantWaiting

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        if isinstance(error, OAuthError) and error.status == 429:
            self.closed = True
        self._lock.release()


def _refresh_one(item: Item, turn: _Turn) -> tuple[str, float | None]:
    """One queued refresh through the token service (which records failures, back-off,
    ``needs_reconnect`` and the admins' notice); a 429 closes the tenant's gate for everyone.
    Returns the outcome, and the refresh's duration when it rotated the tokens."""
    from bipsync_partner.connections import tokens

    started = time.monotonic()
    # A 429 from the token endpoint closes the tenant's gate in the token service itself (for
    # inline refreshes too): the tenant's other connections wait as well.
    result = tokens.refresh_connection(item[0], expected_version=item[1], wait=False, turn=turn)
    if result.outcome == "refreshed":
        return "refreshed", time.monotonic() - started
    return (result.outcome if result.outcome != "failed" else result.code or "failed"), None


@dataclass(frozen=True)
class BatchResult:
    """What a batch did: ``outcomes`` counted; ``done`` items (their markers can go);
    ``remaining`` items to queue again in ``retry_in`` seconds (their markers stay), because
    the tenant asked to wait (``waited`` says why) or the batch ran out of time."""

    outcomes: Counter[str]
    done: list[Item]
    remaining: list[Item]
    retry_in: float = 0.0
    waited: str = ""


def batch_budget() -> float:
    """Seconds a batch may start new refreshes for: one last refresh (its HTTP timeout, twice
    for a slow reply) must still end before the task's soft time limit."""
    http = float(settings.BIPSYNC_HTTP_TIMEOUT)
    return max(5.0, settings.REFRESH_TASK_SOFT_TIME_LIMIT - 2 * http - 5)


class _BatchRun:
    """The shared state of one batch, worked by one or more threads: each takes the next item,
    refreshes it, and records the outcome. Taking stops for good when the tenant asks to wait
    or the time budget runs out; what was not refreshed is the batch's ``remaining``."""

    def __init__(self, tenant: str, items: list[Item]) -> None:
        self.items = items
        self.gate = TenantGate(tenant)
        self.turn = _Turn(self.gate)
        self.deadline = time.monotonic() + batch_budget()
        self._lock = threading.Lock()
        self._next = 0
        self.done: list[Item] = []
        self.returned: list[Item] = []
        self.outcomes: Counter[str] = Counter()
        self.durations: list[float] = []
        self.stopped = ""
        self.hold_for = 0.0

    def _take(self) -> Item | None:
        with self._lock:
            if self.turn.closed:
                self.stopped = "rate_limited_wait"
            elif time.monotonic() > self.deadline:
                self.stopped = self.stopped or "out_of_time"
            if self.stopped or self._next >= len(self.items):
                return None
            self._next += 1
            return self.items[self._next - 1]

    def work(self) -> None:
        try:
            while (item := self._take()) is not None:
                self._refresh(item)
        except BaseException:
            self.stop("failed")  # the other threads take nothing more
            raise

    def stop(self, reason: str) -> None:
        with self._lock:
            self.stopped = reason

    def _refresh(self, item: Item) -> None:
        try:
            with bound(connection=item[0]):
                outcome, duration = _refresh_one(item, self.turn)
        except TenantWaiting:
            with self._lock:
                self.returned.append(item)
            return
        except SoftTimeLimitExceeded:
            raise  # the task is leaving: not this connection's fault
        except Exception as error:
            if (retry_in := breaker.retry_in(error)) is not None:
                self._hold(item, retry_in)  # the tenant's breaker is open: the batch waits
                return
            # This connection's own fault (tokens that do not decrypt, an application missing
            # from this worker's settings): recorded on it, and its neighbours go on.
            outcome, duration = failures.record(item[0], error), None
        with self._lock:
            self.done.append(item)
            self.outcomes[outcome] += 1
            if duration is not None:
                self.durations.append(duration)

    def _hold(self, item: Item, retry_in: float) -> None:
        with self._lock:
            self.returned.append(item)
            self.stopped = breaker.TENANT_FAILING
            self.hold_for = max(self.hold_for, retry_in)

    def result(self) -> BatchResult:
        remaining = self.returned + self.items[self._next :]
        if not remaining:
            return BatchResult(self.outcomes, self.done, [])
        if self.stopped == breaker.TENANT_FAILING:
            retry_in = self.hold_for + random.uniform(0, 2)
            return BatchResult(self.outcomes, self.done, remaining, retry_in, self.stopped)
        if self.turn.closed:
            # Read after every thread is done, so a 429 of this batch has closed the gate.
            retry_in = self.gate.remaining() or random.uniform(1, 5)
            retry_in += random.uniform(0, 2)
            return BatchResult(self.outcomes, self.done, remaining, retry_in, "rate_limited_wait")
        return BatchResult(self.outcomes, self.done, remaining, 0.0, self.stopped or "out_of_time")


_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    # Per process, keyed by pid: a prefork child must not use threads it did not start.
    pool = _pools.get(os.getpid())
    if pool is None or pool._max_workers < threads:
        pool = _pools[os.getpid()] = ThreadPoolExecutor(threads, "refresh-batch")
    return pool


def _work_in_thread(run: _BatchRun) -> None:
    try:
        run.work()
    finally:
        # Each thread has its own database connection; an idle pool thread must not hold one
        # open (Celery only manages the task's own thread's connection).
        db_connection.close()


def refresh_batch(tenant: str, items: Sequence[Item]) -> BatchResult:
    """Refresh queued connections of one tenant under one of the tenant's concurrency slots.
    Each refresh is the token service's own transaction, so a batch that dies midway has
    committed every rotation it finished.

    With ``REFRESH_BATCH_PIPELINE`` > 1, that many threads work the batch, but only one of them
    talks to Bipsync at a time: while one request is in flight, another thread locks and reads
    the next connection or commits the last one, so the tenant's slot is used without gaps.
    """
    items = list(items)
    slot = _tenant_slot(tenant)
    if not _take_slot(slot):
        return BatchResult(Counter(), [], items, random.uniform(1, 5), "tenant_busy")
    threads = min(len(items), max(1, int(settings.REFRESH_BATCH_PIPELINE)))
    run = _BatchRun(tenant, items)
    try:
        if threads == 1:
            run.work()
        else:
            # The thread whose answer from Bipsync arrived must get the interpreter back at
            # once: the batch's one request in flight waits on it.
            with switch_interval():
                futures = [_pool(threads).submit(_work_in_thread, run) for _ in range(threads)]
                wait(futures)
            for future in futures:
                future.result()
    except BaseException:
        # The task is leaving (its soft time limit, a worker shutdown): the batch's threads must
        # not go on calling Bipsync once the tenant's slot is given back.
        run.stop("failed")
        raise
    finally:
        slot.release()
        metrics.observe_many("bipsync_token_refresh_duration_seconds", run.durations)
    return run.result()
