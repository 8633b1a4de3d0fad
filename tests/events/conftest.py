"""Fixtures for the outbound events: a real receiving server (a threaded http.server on a free
port) that verifies signatures and de-duplicates by webhook-id, endpoints pointing at it, and a
real Celery worker taking the ``events`` queue."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from pytest_django.fixtures import Settings
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from accounts.models import Team
from bipsync_partner.events import delivery
from bipsync_partner.events.models import EVENT_TYPES, Delivery, Endpoint
from bipsync_partner.events.signing import new_secret
from tests.sync.conftest import (  # noqa: F401 - fixtures shared with the sync tests
    SESSION_PREFIX,
    Worker,
    _isolated_redis_keys,
    database_url,
)

#: The events settings of the tests (and of their worker): plain http and private addresses
#: allowed (the receiver is http://127.0.0.1), and retries in fractions of a second.
EVENTS_TEST_SETTINGS = {
    "EVENTS_ALLOW_PRIVATE_ADDRESSES": "1",
    "EVENTS_ALLOW_HTTP": "1",
    "EVENTS_BACKOFF_BASE_MS": "100",
    "EVENTS_BACKOFF_CAP_MS": "800",
    "EVENTS_TIMEOUT_SECONDS": "3",
    "EVENTS_SWEEP_GRACE_SECONDS": "1",
}


@dataclass
class Seen:
    webhook_id: str
    status: int
    raw: bytes
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Behaviour:
    """How the receiver answers: ``fail_ratio`` of requests get a 500 (seeded), every
    ``rate_limit_every``-th a 429 with ``Retry-After: 1``; ``status`` forces one answer."""

    fail_ratio: float = 0.0
    rate_limit_every: int = 0
    status: int | None = None
    rng: random.Random = field(default_factory=lambda: random.Random(20261202))


class Receiver:
    """A customer's endpoint: verifies each request's signature with the secrets it knows and
    accepts each webhook-id once (a repeat of an accepted id is answered 200 and counted, as a
    de-duplicating receiver does)."""

    def __init__(self) -> None:
        self.secrets: list[str] = []
        self.behaviour = Behaviour()
        self.seen: list[Seen] = []
        self.accepted: Counter[str] = Counter()
        self.repeats: Counter[str] = Counter()
        self.unverified = 0
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.sockets: set[socket.socket] = set()
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                receiver.sockets.add(self.connection)

            def finish(self) -> None:
                receiver.sockets.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                if len(body) < length:
                    return  # cut off by a restart: the sender saw no answer, nothing was judged
                status, extra = receiver.answer(body, dict(self.headers.items()))
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        # A real restart drops the kept-alive connections too (shutdown() only stops accepting).
        for sock in list(self.sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def restart(self, pause: float = 1.0) -> None:
        """Down for ``pause`` seconds (connections refused), then up again on the same port."""
        self.stop()
        time.sleep(pause)
        self.start()

    def verified(self, body: bytes, headers: dict[str, str]) -> bool:
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            return True
        return False

    def answer(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        lowered = {name.lower(): value for name, value in headers.items()}
        webhook_id = lowered.get("webhook-id", "")
        with self.lock:
            status, extra = self._decide(body, headers, webhook_id)
            self.seen.append(Seen(webhook_id, status, body, json.loads(body or b"null"), lowered))
        return status, extra

    def _decide(
        self, body: bytes, headers: dict[str, str], webhook_id: str
    ) -> tuple[int, dict[str, str]]:
        if not self.verified(body, headers):
            self.unverified += 1
            return 401, {}
        behaviour = self.behaviour
        if behaviour.status is not None:
            return behaviour.status, {}
        if behaviour.rate_limit_every and len(self.seen) % behaviour.rate_limit_every == 0:
            return 429, {"Retry-After": "1"}
        if behaviour.rng.random() < behaviour.fail_ratio:
            return 500, {}
        if self.accepted[webhook_id]:
            self.repeats[webhook_id] += 1
            return 200, {}
        self.accepted[webhook_id] += 1
        return 204, {}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.stop()


@pytest.fixture
def events_settings(settings: Settings) -> Settings:
    for name, value in EVENTS_TEST_SETTINGS.items():
        setattr(settings, name, value == "1" if "_ALLOW_" in name else int(value))
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return settings


def add_endpoint(
    team: Team, receiver: Receiver, types: list[str] | None = None, **fields: Any
) -> Endpoint:
    secret = new_secret()
    receiver.secrets.append(secret)
    return Endpoint.objects.create(
        team=team,
        url=receiver.url,
        event_types=types or list(EVENT_TYPES),
        secret=secret,
        **fields,
    )


def run_due(limit: int = 1000) -> list[str]:
    """Attempt every due delivery in this process, as the worker's tasks would."""
    due = Delivery.objects.filter(status=Delivery.Status.PENDING).values_list("id", flat=True)
    return [delivery.deliver(delivery_id) for delivery_id in list(due)[:limit]]


def events_worker_env(**extra: str) -> dict[str, str]:
    import os

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
        **EVENTS_TEST_SETTINGS,
    }
    env.update(extra)
    return env


@contextlib.contextmanager
def running_events_worker(tmp_path: Path, concurrency: int) -> Iterator[Worker]:
    """A real worker of ``concurrency`` processes with the tests' events settings."""
    worker = Worker(events_worker_env(), tmp_path / "celery.log", concurrency=concurrency)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def events_worker(events_settings: Settings, tmp_path: Path) -> Iterator[Worker]:
    with running_events_worker(tmp_path, concurrency=4) as worker:
        yield worker
