"""Gauges of the sync read at scrape time: runs in progress and stale connections."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from bipsync_partner.sync.models import SyncRun, SyncSchedule


def sync_gauges() -> Iterable[Metric]:
    unfinished = GaugeMetricFamily(
        "bipsync_sync_runs_unfinished", "Sync runs queued or running.", labels=["status"]
    )
    counts = dict(
        SyncRun.objects.filter(status__in=SyncRun.UNFINISHED)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    for status in SyncRun.UNFINISHED:
        unfinished.add_metric([status], float(counts.get(status, 0)))
    yield unfinished
    yield GaugeMetricFamily(
        "bipsync_sync_stale_connections",
        "Connections without a successful sync within three schedule periods.",
        value=float(SyncSchedule.objects.stale().count()),
    )
