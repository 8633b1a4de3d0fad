"""Fixtures for writes: the sync tests' sandbox world and Redis isolation, the team's service
account connected at the sandbox for real, and real Celery workers on the ``writes`` queue."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Team
from bipsync_partner.connections.models import Connection
from bipsync_partner.writes import queueing
from bipsync_partner.writes.models import Write
from tests.support.sandbox import Sandbox
from tests.sync.conftest import (  # noqa: F401 - fixtures shared with the sync tests
    SyncWorld,
    Worker,
    _isolated_redis_keys,
    make_sync_world,
    partner_settings_for,
    worker_env,
)

#: The worker's settings: short retries, and a lease short enough for a test to outlive (the task
#: time limit stays below it, so a live worker's claim never lapses).
WRITES_WORKER_SETTINGS = {
    "SYNC_BACKOFF_BASE_MS": "50",
    "SYNC_BACKOFF_CAP_MS": "200",
    "WRITES_BACKOFF_BASE_MS": "100",
    "WRITES_BACKOFF_CAP_MS": "1000",
    "WRITES_LEASE_SECONDS": "10",
    "WRITES_TASK_SOFT_TIME_LIMIT": "7",
    "WRITES_TASK_TIME_LIMIT": "8",
    "BIPSYNC_HTTP_TIMEOUT": "5",
}


@pytest.fixture
def world(sandbox: Sandbox) -> Iterator[SyncWorld]:
    fresh = make_sync_world(sandbox)
    yield fresh
    sandbox.clear_faults(target="api")
    fresh.world.http.close()


@pytest.fixture
def partner(settings: Settings, sandbox: Sandbox, world: SyncWorld, tmp_path: Path) -> Settings:
    for name, value in partner_settings_for(sandbox, world.world).items():
        setattr(settings, name, value)
    for name, value in WRITES_WORKER_SETTINGS.items():
        setattr(settings, name, int(value))
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return settings


def note_post_fault(sandbox: Sandbox, world: SyncWorld, kind: str, **options: Any) -> None:
    """A sandbox fault on the tenant's note creation only (``POST /v2/research/note``)."""
    sandbox.set_fault(
        kind,
        target="api",
        tenant=world.tenant,
        path_prefix=f"/t/{world.tenant}/api/v2/research/note",
        method="POST",
        **options,
    )


def service_account(team: Team, world: SyncWorld, *, scope: str | None = None) -> Connection:
    """The team's service account, holding tokens from a real approval at the sandbox."""
    app = world.world.service_app
    issued = world.world.connect(app, scope=scope)
    return Connection.objects.create(
        team=team,
        tenant=world.tenant,
        kind=Connection.Kind.SERVICE_ACCOUNT,
        scopes=scope or " ".join(app.scopes),
        subject_name="Partner Sync (service account)",
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        access_expires_at=timezone.now() + timedelta(seconds=issued["expires_in"]),
        refresh_expires_at=timezone.now() + timedelta(days=30),
    )


def start_worker(
    sandbox: Sandbox, world: SyncWorld, log_dir: Path, settings: Settings, concurrency: int = 4
) -> Worker:
    env = worker_env(sandbox, world, MEDIA_ROOT=str(settings.MEDIA_ROOT), **WRITES_WORKER_SETTINGS)
    worker = Worker(env, log_dir / f"celery-{time.monotonic_ns()}.log", concurrency=concurrency)
    worker.start()
    return worker


@pytest.fixture
def writes_worker(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, tmp_path: Path
) -> Iterator[Worker]:
    worker = start_worker(sandbox, world, tmp_path, partner)
    yield worker
    worker.stop()


def deliver_all(team: Team, *, timeout: float = 300, sweep_every: float = 2.0) -> float:
    """Wait until every write of the team is final, running beat's sweep on its schedule (here,
    every ``sweep_every`` seconds) as beat would; the seconds it took."""
    started = time.monotonic()
    deadline = started + timeout
    next_sweep = started + sweep_every
    while time.monotonic() < deadline:
        if not Write.objects.filter(team=team, status__in=Write.PENDING).exists():
            return time.monotonic() - started
        if time.monotonic() >= next_sweep:
            queueing.sweep()
            next_sweep = time.monotonic() + sweep_every
        time.sleep(0.2)
    left = Write.objects.filter(team=team, status__in=Write.PENDING).values(
        "status", "attempts", "error"
    )[:5]
    raise AssertionError(f"Writes still pending after {timeout} s: {list(left)}")


def statuses(team: Team) -> dict[str, int]:
    result: dict[str, int] = {}
    for status in Write.objects.filter(team=team).values_list("status", flat=True):
        result[status] = result.get(status, 0) + 1
    return result
