"""Proactive token refresh: find connections that will need a refresh soon and queue one each.

Beat fires :func:`sweep` every minute (settings.CELERY_BEAT_SCHEDULE). A connection is due when
its access token expires within ``REFRESH_ACCESS_WINDOW_SECONDS`` (the token service's own
``due_for_refresh`` query, which also brings back failing connections whose back-off has passed),
or when its refresh token lapses within ``REFRESH_REFRESH_WINDOW_SECONDS`` (Bipsync rotates on
every refresh [doc], so refreshing early keeps an idle connection alive).

Exactly one refresh per rotation, whatever the number of sweeps, workers and web requests:

1. the sweep claims a Redis marker per (connection, version) with ``SET NX`` before queuing, so
   two sweeps running at once (or a sweep while the previous refresh is still queued) queue each
   connection once; the marker is released when the task ends and expires if a worker dies,
   early enough for a later sweep to queue the refresh again before the token lapses
   (:func:`marker_ttl`);
2. the task re-reads the connection and does nothing if its version moved (someone rotated) or it
   is no longer due;
3. the token service refreshes under a Postgres row lock and re-reads the row after taking it
   (issue 5), so even two tasks that got past 1 and 2 cause one rotation.

Around each refresh: the tenant's "not before" gate (a ``Retry-After`` seen by any worker) is
honoured, and a per-tenant semaphore bounds concurrent refreshes at one tenant. Failures are the
token service's to record (consecutive failures, ``next_retry_at`` with jitter, ``needs_reconnect``
and the admins' email on ``invalid_grant``); the sweep only skips connections still backing off.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.throttle import OnceKeys, TenantGate, TenantSemaphore
from bipsync_partner.ops import metrics

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
    by_access = Connection.objects.due_for_refresh(now=now, horizon=access_window())
    retry_due = models.Q(next_retry_at__isnull=True) | models.Q(next_retry_at__lte=now)
    by_refresh = Connection.objects.filter(
        models.Q(status__in=[Connection.Status.ACTIVE, Connection.Status.FAILING])
        & models.Q(refresh_expires_at__lte=now + refresh_window())
        & retry_due
    )
    return by_access | by_refresh


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
class SweepResult:
    due: int
    queued: int
    already_queued: int


Enqueue = Callable[[UUID, int, float], None]


def _batches(
    rows: Iterable[tuple[UUID, int, datetime | None]], size: int
) -> Iterator[list[tuple[UUID, int, datetime | None]]]:
    batch: list[tuple[UUID, int, datetime | None]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def sweep(enqueue: Enqueue, *, now: datetime | None = None) -> SweepResult:
    """Queue one refresh per due connection that is not queued already.

    ``enqueue(connection_id, version, countdown)`` publishes the task; it is called through
    ``transaction.on_commit`` (at once outside a transaction).
    """
    now = now or timezone.now()
    markers = queued_markers()
    rows = (
        due_connections(now)
        .order_by("access_expires_at", "id")
        .values_list("id", "version", "access_expires_at")
        .iterator(chunk_size=settings.REFRESH_SWEEP_BATCH)
    )
    due = queued = already = 0
    for batch in _batches(rows, settings.REFRESH_SWEEP_BATCH):
        due += len(batch)
        names = [markers.name(conn_id, version) for conn_id, version, _ in batch]
        ttls = [marker_ttl(expires_at, now) for _, _, expires_at in batch]
        for (conn_id, version, expires_at), name, claimed in zip(
            batch, names, markers.claim_many(names, ttls), strict=True
        ):
            if not claimed:
                already += 1
                continue
            queued += 1
            countdown = jitter_for(expires_at, now)
            transaction.on_commit(
                functools.partial(_publish, enqueue, conn_id, version, countdown, name)
            )
    log.info("Refresh sweep: %d due, %d queued, %d already queued", due, queued, already)
    return SweepResult(due=due, queued=queued, already_queued=already)


def _publish(
    enqueue: Enqueue, connection_id: UUID, version: int, countdown: float, name: str
) -> None:
    try:
        enqueue(connection_id, version, countdown)
    except Exception:
        # Without the message the marker would hold the connection back until it expires.
        queued_markers().release([name])
        raise


# --- one refresh ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefreshResult:
    """``outcome`` for logs and metrics; ``retry_in`` seconds when the task should come back."""

    outcome: str
    retry_in: float | None = None


def refresh_due(connection_id: UUID | str, version: int) -> RefreshResult:
    """Refresh a connection the sweep queued, unless someone else already did.

    The refresh itself is the token service's :func:`~bipsync_partner.connections.tokens.
    refresh_connection` (row lock, re-read, rotate, commit, record failures and back-off,
    ``needs_reconnect`` and the admins' notice on ``invalid_grant``); around it this function
    adds the tenant's rate-limit gate and concurrency bound.
    """
    from bipsync_partner.connections import tokens

    conn = Connection.objects.filter(pk=connection_id).values("version", "tenant", "status").first()
    if conn is None:
        return RefreshResult("gone")
    if conn["version"] != version:
        return RefreshResult("already_rotated")
    gate = TenantGate(conn["tenant"])
    wait = gate.remaining()
    if wait > 0:
        # Bipsync told some worker to wait; nobody calls this tenant before then.
        return RefreshResult("rate_limited_wait", retry_in=wait + random.uniform(0, 2))
    slot = TenantSemaphore(
        "refresh",
        conn["tenant"],
        limit=settings.REFRESH_TENANT_CONCURRENCY,
        lease_seconds=settings.REFRESH_TASK_TIME_LIMIT,
    )
    for attempt in range(5):
        if slot.acquire():
            break
        time.sleep(0.05 * (attempt + 1))
    else:
        return RefreshResult("tenant_busy", retry_in=random.uniform(1, 5))
    started = time.monotonic()
    try:
        result = tokens.refresh_connection(connection_id)
    finally:
        slot.release()
    if result.outcome == "refreshed":
        metrics.observe("bipsync_token_refresh_duration_seconds", time.monotonic() - started)
    elif result.code == tokens.RATE_LIMITED and result.retry_at is not None:
        # The token endpoint answered 429: the token service holds this connection back until
        # retry_at (at least Retry-After); the tenant's other connections wait as well.
        gate.defer((result.retry_at - timezone.now()).total_seconds())
    return RefreshResult(result.outcome if result.outcome != "failed" else result.code or "failed")


# --- gauges read at scrape time ---------------------------------------------------------------


def connection_gauges() -> Iterable[Metric]:
    by_status = GaugeMetricFamily(
        "bipsync_connections", "Connections by status.", labels=["status"]
    )
    counts = dict(
        Connection.objects.order_by()
        .values_list("status")
        .annotate(n=models.Count("id"))
        .values_list("status", "n")
    )
    for status in Connection.Status.values:
        by_status.add_metric([status], float(counts.get(status, 0)))
    yield by_status

    now = timezone.now()
    oldest = (
        due_connections(now)
        .order_by()
        .aggregate(
            access=models.Min("access_expires_at"),
            refresh=models.Min("refresh_expires_at"),
        )
    )
    # A connection became due when its expiry entered the window; how long ago that was for the
    # longest-waiting one. Near zero while the sweep keeps up.
    became_due = [
        moment - window
        for moment, window in (
            (oldest["access"], access_window()),
            (oldest["refresh"], refresh_window()),
        )
        if moment is not None
    ]
    age = max(0.0, (now - min(became_due)).total_seconds()) if became_due else 0.0
    yield GaugeMetricFamily(
        "bipsync_refresh_oldest_due_seconds",
        "Seconds since the longest-waiting due connection became due for a refresh.",
        value=age,
    )
