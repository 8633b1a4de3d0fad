"""Prometheus metrics that add up across every web process and worker.

Counts live in Redis (one hash per metric), so an increment in any Celery worker shows on the
web process's /metrics page without Prometheus's multi-process file mode. Gauges that describe
the present (connections by status, queue depth, the oldest overdue refresh) are read from
Postgres and Redis at scrape time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from functools import cache

import redis
from django.conf import settings
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

log = logging.getLogger(__name__)

PREFIX = "bipsync_partner:metrics:"
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

COUNTERS = {
    "bipsync_token_refreshes": ("Token refreshes by outcome.", ("outcome",)),
    "bipsync_sync_runs": ("Sync runs by outcome.", ("outcome",)),
    "bipsync_sync_documents": ("Documents seen by sync runs, by outcome.", ("outcome",)),
    # refused (a security event), used_last_good, endpoints_changed: each one wants a look.
    "bipsync_metadata_events": ("Tenant metadata (RFC 8414) events, by kind.", ("event",)),
    "bipsync_tenant_breaker": ("Tenants' token-endpoint circuit breakers, by event.", ("event",)),
    "bipsync_grant_incidents": ("Bursts of refused grants, by event.", ("event",)),
    # delivered, failed (final), retry (a passing failure; outcome_unknown ones are looked up).
    "bipsync_writes": (
        "Delivery attempts of writes to Bipsync, by kind and outcome.",
        ("kind", "outcome"),
    ),
}
HISTOGRAMS = {
    "bipsync_token_refresh_duration_seconds": "Time taken by a token refresh at Bipsync.",
}


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2, decode_responses=True
    )


def _label_key(values: Iterable[str]) -> str:
    return "|".join(values)


def inc(name: str, amount: int = 1, **labels: str) -> None:
    """Add to a counter. Metrics must never break the work they measure, so errors are logged."""
    _help, label_names = COUNTERS[name]
    key = _label_key(labels[n] for n in label_names)
    try:
        _redis().hincrby(PREFIX + name, key, amount)
    except redis.RedisError:
        log.warning("Could not record metric %s", name)


def observe(name: str, seconds: float) -> None:
    observe_many(name, [seconds])


def observe_many(name: str, durations: Iterable[float]) -> None:
    """Add observations to a histogram in one round trip."""
    assert name in HISTOGRAMS
    buckets: dict[str, int] = {}
    total = 0.0
    for seconds in durations:
        bucket = next((str(b) for b in DURATION_BUCKETS if seconds <= b), "+Inf")
        buckets[bucket] = buckets.get(bucket, 0) + 1
        total += seconds
    if not buckets:
        return
    try:
        pipe = _redis().pipeline()
        for bucket, count in buckets.items():
            pipe.hincrby(PREFIX + name, bucket, count)
        pipe.hincrbyfloat(PREFIX + name, "_sum", total)
        pipe.execute()
    except redis.RedisError:
        log.warning("Could not record metric %s", name)


class StoredMetrics(Collector):
    """Counters and histograms kept in Redis."""

    def collect(self) -> Iterator[Metric]:
        client = _redis()
        for name, (help_text, label_names) in COUNTERS.items():
            family = CounterMetricFamily(name, help_text, labels=list(label_names))
            for key, value in client.hgetall(PREFIX + name).items():
                family.add_metric(str(key).split("|"), float(value))
            yield family
        for name, help_text in HISTOGRAMS.items():
            raw = {str(k): float(v) for k, v in client.hgetall(PREFIX + name).items()}
            running, buckets = 0.0, []
            for bound in [*map(str, DURATION_BUCKETS), "+Inf"]:
                running += raw.get(bound, 0.0)
                buckets.append((bound, running))
            yield HistogramMetricFamily(
                name, help_text, buckets=buckets, sum_value=raw.get("_sum", 0.0)
            )


class LiveGauges(Collector):
    """Gauges computed when Prometheus scrapes; each source is registered by the app that owns it."""

    sources: list[Callable[[], Iterable[Metric]]] = []

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            try:
                yield from source()
            except Exception:
                # A failing gauge must not hide the others; the failure itself is visible in logs.
                log.exception("Metrics source %s failed", getattr(source, "__name__", source))


def queue_depths() -> Iterable[Metric]:
    family = GaugeMetricFamily(
        "bipsync_celery_queue_depth", "Messages waiting in each Celery queue.", labels=["queue"]
    )
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2)
    for queue in ("default", "refresh", "sync", "writes"):
        family.add_metric([queue], float(client.llen(queue)))
    yield family


LiveGauges.sources.append(queue_depths)


def registry() -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StoredMetrics())
    reg.register(LiveGauges())
    return reg
