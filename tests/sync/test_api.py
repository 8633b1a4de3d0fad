"""The REST API client against the sandbox over real HTTP: 401, 429, 5xx, 403 and scopes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from pytest_django.fixtures import Settings

from accounts.models import Team
from bipsync_partner.connections.models import Connection
from bipsync_partner.coordination import TenantGate
from bipsync_partner.sync import engine, scheduling
from bipsync_partner.sync.api import (
    GATE_RECHECK_SECONDS,
    ApiUnavailable,
    InsufficientScope,
    IpNotAllowListed,
    RateLimited,
    RetryPolicy,
    parse_retry_after,
)
from bipsync_partner.sync.client import api_for
from bipsync_partner.sync.models import SyncRun
from tests.support.sandbox import Sandbox, WorldApp
from tests.sync.conftest import SyncWorld, machine_connection, make_sync_world

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(sandbox: Sandbox) -> Iterator[SyncWorld]:
    fresh = make_sync_world(sandbox)
    yield fresh
    sandbox.clear_faults()
    fresh.world.http.close()


def token_grants(sandbox: Sandbox, world: SyncWorld) -> int:
    return sandbox.token_requests(world.machine_app.client_id, "client_credentials", outcome=None)


def test_retry_after_is_read_as_seconds_or_a_date_and_bounded() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7
    assert (
        parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30
    )
    assert (
        parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0
    )
    assert parse_retry_after("999999") == 3600
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_a_rejected_token_is_refreshed_once_and_the_call_retried(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    conn = machine_connection(team, world)
    with api_for(conn) as api:
        assert api.page("/v1/research", offset=0, limit=10).total == 0
        assert token_grants(sandbox, world) == 1
        sandbox.revoke_tokens(world.machine_app.client_id)  # Bipsync now answers 401

        assert api.page("/v1/research", offset=0, limit=10).total == 0

    assert token_grants(sandbox, world) == 2


def test_a_missing_scope_is_reported_without_a_refresh(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    narrow = sandbox.create_application(
        name="Export without fields",
        client_id=f"narrow-{world.tenant}",
        grant_types=["client_credentials"],
        scopes=["rest_api:read"],
        team_id=world.team_id,
        tenants=[world.tenant],
    )
    narrow_world = SyncWorld(
        world.world,
        WorldApp(narrow["client_id"], narrow["client_secret"], None, ("rest_api:read",)),
    )
    conn = machine_connection(team, narrow_world, scopes="rest_api:read")
    with api_for(conn) as api, pytest.raises(InsufficientScope):
        api.get("/v1/field")
    assert sandbox.token_requests(narrow["client_id"], "client_credentials", outcome=None) == 1

    run = scheduling.request_sync(conn, publish=lambda *_: None).run
    engine.execute(run.pk, api_factory=api_for)
    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED
    assert "lacks the rest_api:fields:read scope" in run.notes


def test_a_429_makes_every_worker_wait_as_told(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    conn = machine_connection(team, world)
    slept: list[float] = []
    with api_for(conn) as api:
        api.page("/v1/research", offset=0, limit=1)  # the token, before the fault
        api._sleep = slept.append  # record the waits instead of sleeping through them
        sandbox.set_fault("rate_limit", target="api", delay_ms=4000, count=1, tenant=world.tenant)

        api.page("/v1/research", offset=0, limit=1)

    assert api.rate_limited == 1
    assert len(slept) == 1
    assert 3 <= slept[0] <= 4
    # The wait is shared: a client in any other process sees the tenant's gate closed.
    assert 2 < TenantGate(world.tenant).remaining() <= 4


def test_a_wait_another_worker_was_told_of_is_honoured_within_a_quarter_second(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    conn = machine_connection(team, world)
    slept: list[float] = []
    with api_for(conn) as api:
        api._sleep = slept.append
        api.page("/v1/research", offset=0, limit=1)  # the gate is open
        TenantGate(world.tenant).defer(3)  # another worker was just told "wait 3 s"
        time.sleep(GATE_RECHECK_SECONDS + 0.05)

        api.page("/v1/research", offset=0, limit=1)

    assert len(slept) == 1
    assert 2 < slept[0] <= 3


def test_a_wait_longer_than_a_task_should_sleep_puts_the_run_back_on_the_queue(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    partner.SYNC_MAX_INLINE_WAIT_SECONDS = 2
    conn = machine_connection(team, world)
    sandbox.set_fault("rate_limit", target="api", delay_ms=9000, count=1, tenant=world.tenant)
    with api_for(conn) as api, pytest.raises(RateLimited) as raised:
        api.get("/v1/contenttype")
    assert raised.value.transient
    assert raised.value.retry_after is not None
    assert raised.value.retry_after > 2

    run = scheduling.request_sync(conn, publish=lambda *_: None).run
    outcome = engine.execute(run.pk, api_factory=api_for)
    run.refresh_from_db()
    assert outcome.action == engine.RETRY
    assert outcome.countdown > 2
    assert run.status == SyncRun.Status.QUEUED
    assert run.attempts == 1
    assert "Waiting" in run.error_message


def test_server_errors_are_retried_with_backoff_then_reported_as_transient(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    conn = machine_connection(team, world)
    slept: list[float] = []
    with api_for(conn) as api:
        api.page("/v1/research", offset=0, limit=1)
        api._sleep = slept.append
        api.policy = RetryPolicy(attempts=4, backoff_base=0.5, backoff_cap=3)
        sandbox.set_fault("status", target="api", status=503, count=2, tenant=world.tenant)
        api.page("/v1/research", offset=0, limit=1)
        assert len(slept) == 2
        assert 0.25 <= slept[0] <= 0.5
        assert 0.5 <= slept[1] <= 1.0

        sandbox.set_fault("status", target="api", status=502, tenant=world.tenant)
        with pytest.raises(ApiUnavailable) as raised:
            api.page("/v1/research", offset=0, limit=1)
    assert raised.value.transient
    assert "4 times in a row" in raised.value.sentence


def test_403_means_the_address_is_not_allow_listed(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    conn = machine_connection(team, world)
    with api_for(conn) as api:
        api.page("/v1/research", offset=0, limit=1)
        sandbox.set_allowlist(world.tenant, ["198.51.100.0/24"])
        with pytest.raises(IpNotAllowListed) as raised:
            api.page("/v1/research", offset=0, limit=1)
    assert not raised.value.transient
    assert "this server's IP address is not allow-listed by the Bipsync tenant" in str(raised.value)


def test_a_connection_needing_reconnect_fails_the_run_with_the_token_services_sentence(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    conn = machine_connection(team, world)
    Connection.objects.filter(pk=conn.pk).update(
        status=Connection.Status.FAILING,
        next_retry_at=datetime.now(UTC) + timedelta(minutes=5),
        last_error_message="Bipsync could not be reached to refresh the tokens.",
    )
    run = scheduling.request_sync(conn, publish=lambda *_: None).run

    outcome = engine.execute(run.pk, api_factory=api_for)

    run.refresh_from_db()
    assert outcome.action == engine.RETRY  # a token that may come back later: wait, not fail
    assert 250 <= outcome.countdown <= 310
    assert "could not be reached" in run.error_message
