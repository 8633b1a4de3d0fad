"""Fixtures for sync and refresh tests: a sandbox world per module, machine and user connections,
and a real Celery worker (subprocess) per module on Redis and the test database.

Isolation on a shared machine: the worker's broker keys carry a prefix unique to this session
(kombu's ``global_keyprefix``), and so do the coordination keys (rate-limit gates, slots,
markers), so concurrent test sessions never take each other's tasks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.celery import app as celery_app
from bipsync_partner.connections.models import Connection
from devtools.processes import celery_worker_argv, die_with_parent
from tests.support.sandbox import Sandbox, SandboxWorld, WorldApp, make_world

REPO_ROOT = Path(__file__).resolve().parents[2]
SESSION_PREFIX = f"test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
SYNC_SCOPES = ("rest_api:read", "rest_api:fields:read")


@pytest.fixture(scope="session", autouse=True)
def _isolated_redis_keys() -> Iterator[None]:
    """Broker and coordination keys of this session stay apart from other sessions'."""
    old_options = dict(celery_app.conf.broker_transport_options or {})
    old_prefix = django_settings.COORDINATION_KEY_PREFIX
    celery_app.conf.broker_transport_options = {
        **old_options,
        "global_keyprefix": f"{SESSION_PREFIX}:",
    }
    django_settings.COORDINATION_KEY_PREFIX = f"{SESSION_PREFIX}:coord"
    yield
    celery_app.conf.broker_transport_options = old_options
    django_settings.COORDINATION_KEY_PREFIX = old_prefix


@dataclass
class SyncWorld:
    """A sandbox world plus the customer's own machine application with the fields scope."""

    world: SandboxWorld
    machine_app: WorldApp

    @property
    def tenant(self) -> str:
        return self.world.tenant

    @property
    def team_id(self) -> str:
        return self.world.team_id


def make_sync_world(sandbox: Sandbox) -> SyncWorld:
    world = make_world(sandbox)
    created = sandbox.create_application(
        name="Customer research export",
        client_id=f"machine-{world.tenant}",
        grant_types=["client_credentials"],
        scopes=list(SYNC_SCOPES),
        team_id=world.team_id,
        tenants=[world.tenant],
    )
    app = WorldApp(created["client_id"], created["client_secret"], None, SYNC_SCOPES)
    return SyncWorld(world=world, machine_app=app)


@pytest.fixture(scope="module")
def sync_world(sandbox: Sandbox) -> Iterator[SyncWorld]:
    world = make_sync_world(sandbox)
    yield world
    world.world.http.close()


def partner_settings_for(sandbox: Sandbox, world: SandboxWorld) -> dict[str, Any]:
    return {
        "BIPSYNC_API_BASE_TEMPLATE": sandbox.api_template,
        "BIPSYNC_WEB_BASE_TEMPLATE": sandbox.web_template,
        "BIPSYNC_ALLOW_INSECURE_LOOPBACK": True,
        "BIPSYNC_USER_CLIENT_ID": world.user_app.client_id,
        "BIPSYNC_USER_CLIENT_SECRET": world.user_app.client_secret,
        "BIPSYNC_SERVICE_CLIENT_ID": world.service_app.client_id,
        "BIPSYNC_SERVICE_CLIENT_SECRET": world.service_app.client_secret,
        "BIPSYNC_PUBLIC_CLIENT_ID": world.device_app.client_id,
    }


@pytest.fixture
def partner(settings: Settings, sandbox: Sandbox, sync_world: SyncWorld) -> Settings:
    """Point the partner app (this process) at the sandbox and the module's applications."""
    for name, value in partner_settings_for(sandbox, sync_world.world).items():
        setattr(settings, name, value)
    return settings


def machine_connection(team: Team, world: SyncWorld, **fields: Any) -> Connection:
    """A client-credentials connection: it syncs by default and needs no refresh token."""
    values: dict[str, Any] = {
        "team": team,
        "tenant": world.tenant,
        "kind": Connection.Kind.CLIENT_CREDENTIALS,
        "client_id": world.machine_app.client_id,
        "client_secret": world.machine_app.client_secret,
        "bipsync_team_id": world.team_id,
        "scopes": " ".join(SYNC_SCOPES),
        "subject_name": "Customer research export",
    }
    values.update(fields)
    return Connection.objects.create(**values)


def user_connection(
    world: SyncWorld, team: Team, user: User, *, expires_in: timedelta | None = None
) -> Connection:
    """A user connection holding tokens from a real authorization at the sandbox."""
    issued = world.world.connect(world.world.user_app)
    lifetime = expires_in if expires_in is not None else timedelta(seconds=issued["expires_in"])
    return Connection.objects.create(
        team=team,
        user=user,
        created_by=user,
        tenant=world.tenant,
        kind=Connection.Kind.USER,
        subject_id=world.world.admin.id,
        scopes=" ".join(world.world.user_app.scopes),
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        access_expires_at=timezone.now() + lifetime,
        refresh_expires_at=timezone.now() + timedelta(days=30),
    )


# --- the worker -------------------------------------------------------------------------------


def database_url() -> str:
    db = django_settings.DATABASES["default"]
    auth = str(db["USER"])
    if db.get("PASSWORD"):
        auth += f":{db['PASSWORD']}"
    return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class Worker:
    """``celery -A bipsync_partner.celery worker`` in its own process group."""

    def __init__(self, env: dict[str, str], log_path: Path, *, concurrency: int = 2) -> None:
        self.env = env
        self.log_path = log_path
        self.concurrency = concurrency
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            celery_worker_argv(
                concurrency=self.concurrency,
                loglevel="INFO",
                name=f"{SESSION_PREFIX}-{uuid.uuid4().hex[:6]}@%h",
            ),
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"The worker exited: {self.log_tail()}")
            if b" ready." in self.log_path.read_bytes()[-20000:]:
                return
            time.sleep(0.1)
        raise RuntimeError(f"The worker did not start: {self.log_tail()}")

    def log_tail(self, size: int = 4000) -> str:
        return self.log_path.read_bytes()[-size:].decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


#: Settings given to the worker process (and mirrored in this process by ``worker_settings``).
WORKER_SETTINGS = {
    "REFRESH_JITTER_SECONDS": "1",
    "SYNC_BACKOFF_BASE_MS": "100",
    "SYNC_BACKOFF_CAP_MS": "500",
    "SYNC_REQUEUE_AFTER_SECONDS": "30",
}


@pytest.fixture(scope="module")
def celery_worker(
    django_db_setup: None, sandbox: Sandbox, sync_world: SyncWorld, tmp_path_factory: Any
) -> Iterator[Worker]:
    worker = Worker(
        worker_env(sandbox, sync_world), tmp_path_factory.mktemp("worker") / "celery.log"
    )
    worker.start()
    yield worker
    worker.stop()


def worker_env(sandbox: Sandbox, sync_world: SyncWorld, **extra: str) -> dict[str, str]:
    """The environment of a worker process on this session's database, Redis keys and sandbox."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bipsync_partner.settings",
        "DEBUG": "1",
        "DATABASE_URL": database_url(),
        "REDIS_URL": django_settings.REDIS_URL,
        "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
        "CELERY_BROKER_KEY_PREFIX": f"{SESSION_PREFIX}:",
        "COORDINATION_KEY_PREFIX": f"{SESSION_PREFIX}:coord",
        "TOKEN_ENCRYPTION_KEYS": ",".join(django_settings.TOKEN_ENCRYPTION_KEYS),
        "PYTHONUNBUFFERED": "1",
        **WORKER_SETTINGS,
    }
    for name, value in partner_settings_for(sandbox, sync_world.world).items():
        env[name] = "1" if value is True else str(value or "")
    env.update(extra)
    return env


@pytest.fixture
def worker_settings(partner: Settings) -> Settings:
    for name, value in WORKER_SETTINGS.items():
        setattr(partner, name, int(value))
    return partner


def wait_for(
    condition: Callable[[], bool], *, timeout: float = 60, interval: float = 0.1, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout} s waiting for {what or condition}")
