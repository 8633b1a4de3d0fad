"""A full connect → refresh → sync cycle, with every logger at DEBUG, never writes a token.

The logs are captured twice: as written by the production pipeline (our ContextFilter and
JSON formatter), and as the raw records before any redaction, so that the test proves the code
does not log secrets in the first place rather than relying on the redaction filter.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Membership, Team, User
from bipsync_partner.connections import tokens
from bipsync_partner.connections.models import Connection
from bipsync_partner.ops.logs import ContextFilter, JsonFormatter
from bipsync_partner.sync import scheduling
from bipsync_partner.sync.models import SyncRun
from bipsync_partner.sync.tasks import run_sync_task
from tests.connections.connect_support import come_back, configure_partner, new_world, start
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.django_db(transaction=True)


class RawRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.paused = False

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        """Leave out what the test itself does as the person at the browser: its own HTTP client
        logs the sandbox's redirect (with the code), which is not the product's logging."""
        self.paused = True
        try:
            yield
        finally:
            self.paused = False

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.paused

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(text)


@pytest.fixture
def captured_logs() -> Iterator[tuple[io.StringIO, RawRecords]]:
    written = io.StringIO()
    raw = RawRecords()
    pipeline = logging.StreamHandler(written)
    pipeline.setLevel(logging.DEBUG)
    pipeline.addFilter(ContextFilter())
    pipeline.addFilter(raw.filter)
    pipeline.setFormatter(JsonFormatter())
    root = logging.getLogger()
    quiet = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "celery")}
    old_level = root.level
    root.setLevel(logging.DEBUG)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.DEBUG)
    root.addHandler(raw)
    root.addHandler(pipeline)
    try:
        yield written, raw
    finally:
        root.removeHandler(pipeline)
        root.removeHandler(raw)
        root.setLevel(old_level)
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)


def secrets_of(conn: Connection) -> set[str]:
    conn.refresh_from_db()
    return {value for value in (conn.access_token, conn.refresh_token) if value}


def test_a_connect_refresh_sync_cycle_logs_no_token(
    settings: Settings,
    sandbox: Sandbox,
    captured_logs: tuple[io.StringIO, RawRecords],
) -> None:
    written, raw = captured_logs
    world = new_world(sandbox)
    configure_partner(settings, sandbox, world)
    sandbox.generate_research(
        world.tenant,
        world.team_id,
        150,
        seed=7,
        share_with=[world.service_app.client_id],
        private_fraction=0,
    )
    team = Team.objects.create(name="Acme Research", slug="acme-logs")
    alice = User.objects.create_user("alice-logs@example.com", "pw-alice-logs-2026")
    team.add_member(alice, Membership.Role.ADMIN)
    client = Client()
    client.force_login(alice)
    issued: set[str] = {world.service_app.client_secret or "", world.user_app.client_secret or ""}

    # Connect (service account): the authorization code and PKCE verifier are secrets too.
    authorize_url = start(client, team, world.tenant, "service_account")
    with raw.pause():
        location = sandbox.authorize(authorize_url, world.admin.email, world.admin.password)
    issued.add(parse_qs(urlsplit(location).query)["code"][0])
    response = come_back(client, location)
    assert response.status_code == 302
    conn = Connection.objects.get(team=team)
    assert conn.status == Connection.Status.ACTIVE
    issued |= secrets_of(conn)

    # Refresh: the sandbox and our row both say the access token is spent.
    sandbox.expire_tokens(world.service_app.client_id)
    Connection.objects.filter(pk=conn.pk).update(access_expires_at=timezone.now() - timedelta(1))
    conn.refresh_from_db()
    tokens.get_access_token(conn)
    issued |= secrets_of(conn)
    assert len(issued) >= 7  # 2 client secrets, the code, two access and two refresh tokens

    # Sync, in this process so that every line it logs is captured here.
    requested = scheduling.request_sync(conn, publish=lambda run_id, countdown: None)
    run_sync_task.apply(args=(requested.run.pk,))
    run = SyncRun.objects.get(pk=requested.run.pk)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    assert run.created_count == 150
    issued |= secrets_of(conn)

    text = written.getvalue()
    # The cycle did log, with the connection's id on its lines: the search below means something.
    assert str(conn.pk) in text
    assert len(raw.lines) > 20
    issued.discard("")
    for secret in issued:
        assert secret not in text, "a secret reached the written logs"
        assert not any(secret in line for line in raw.lines), "a secret was logged (pre-redaction)"
