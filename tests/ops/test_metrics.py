from __future__ import annotations

import uuid

import pytest
from django.apps import apps
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from bipsync_partner.connections.gauges import connection_gauges
from bipsync_partner.ops import metrics
from bipsync_partner.sync.gauges import sync_gauges


def scrape(client: Client, **headers: str) -> str:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200
    return response.content.decode()


def value_of(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_it_counts_across_processes_through_redis(db: None, client: Client) -> None:
    before = value_of(scrape(client), 'bipsync_token_refreshes_total{outcome="success"}')
    metrics.inc("bipsync_token_refreshes", outcome="success")
    metrics.inc("bipsync_token_refreshes", 2, outcome="success")
    after = value_of(scrape(client), 'bipsync_token_refreshes_total{outcome="success"}')
    assert after - before == 3


def test_it_records_refresh_latency_in_buckets(db: None, client: Client) -> None:
    before = scrape(client)
    metrics.observe("bipsync_token_refresh_duration_seconds", 0.2)
    after = scrape(client)
    name = "bipsync_token_refresh_duration_seconds_bucket"
    assert value_of(after, name + '{le="0.25"}') - value_of(before, name + '{le="0.25"}') == 1
    assert value_of(after, name + '{le="0.1"}') == value_of(before, name + '{le="0.1"}')


def test_it_reports_queue_depths(db: None, client: Client) -> None:
    text = scrape(client)
    for queue in ("default", "refresh", "sync", "writes"):
        assert f'bipsync_celery_queue_depth{{queue="{queue}"}}' in text


def test_it_requires_the_bearer_token_when_configured(
    db: None, client: Client, settings: SettingsWrapper
) -> None:
    settings.METRICS_BEARER_TOKEN = secret = uuid.uuid4().hex
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert "bipsync_token_refreshes_total" in scrape(client, Authorization=f"Bearer {secret}")


def test_each_app_registers_the_gauges_of_what_it_owns(
    db: None, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Start from no gauge sources at all: the apps' ready() must bring back each family, once.
    monkeypatch.setattr(metrics.LiveGauges, "sources", [])
    for label in ("connections", "sync", "connections"):
        apps.get_app_config(label).ready()
    assert metrics.LiveGauges.sources == [connection_gauges, sync_gauges]
    text = scrape(client)
    assert 'bipsync_connections{status="active"}' in text
    assert "bipsync_refresh_oldest_due_seconds" in text
    assert "bipsync_sync_stale_connections" in text
