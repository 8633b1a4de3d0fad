"""Gauges of the connections read at scrape time: connections by status, and how long the
longest-waiting due connection has waited for its refresh.

Registered by the connections app (:mod:`bipsync_partner.connections.apps`), which owns what
they count; /metrics is served by the web process, so they are registered wherever Django starts.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import models
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.sweep import access_window, due_connections, refresh_window


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
