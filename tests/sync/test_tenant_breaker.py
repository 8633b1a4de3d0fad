"""The circuit breaker per tenant, against the sandbox over real HTTP: after repeated server
errors at one tenant's token endpoint nobody calls it (sweep or inline) for the cool-down, the
team's pages say so, one probe decides after the cool-down, and a working answer resumes all."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from pytest_django.fixtures import Settings

from accounts.models import Membership, Team, User
from bipsync_partner.connections import breaker, sweep, tokens
from bipsync_partner.connections.models import Connection
from tests.conftest import signed_in
from tests.support.sandbox import Sandbox
from tests.sync.conftest import SyncWorld, make_sync_world, user_connection

pytestmark = pytest.mark.django_db(transaction=True)

COOLDOWN = 3


@pytest.fixture
def world(sandbox: Sandbox, partner: Settings) -> Iterator[SyncWorld]:
    """A tenant of its own (its breaker and faults touch no other test), a breaker that opens
    after three failures and cools down for three seconds."""
    fresh = make_sync_world(sandbox)
    partner.BIPSYNC_USER_CLIENT_ID = fresh.world.user_app.client_id
    partner.BIPSYNC_USER_CLIENT_SECRET = fresh.world.user_app.client_secret
    partner.BIPSYNC_BREAKER_FAILURES = 3
    partner.BIPSYNC_BREAKER_WINDOW_SECONDS = 60
    partner.BIPSYNC_BREAKER_COOLDOWN_SECONDS = COOLDOWN
    partner.REFRESH_BATCH_PIPELINE = 1
    partner.METRICS_BEARER_TOKEN = None
    yield fresh
    sandbox.clear_faults()
    fresh.world.http.close()


def due_connections(world: SyncWorld, team: Team, user: User, count: int) -> list[Connection]:
    members = [user] + [
        User.objects.create_user(f"analyst{i}@example.com", "pw") for i in range(1, count)
    ]
    for member in members[1:]:
        team.add_member(member, Membership.Role.MEMBER)
    return [
        user_connection(world, team, member, expires_in=timedelta(minutes=4)) for member in members
    ]


def items_of(connections: list[Connection]) -> list[sweep.Item]:
    return [(str(c.pk), c.version) for c in connections]


def refresh_requests(sandbox: Sandbox, world: SyncWorld) -> int:
    return sandbox.token_requests(world.world.user_app.client_id, "refresh_token", outcome=None)


def breaker_events() -> dict[str, float]:
    body = Client().get("/metrics").content.decode()
    families = {f.name: f for f in text_string_to_metric_families(body)}
    return {
        s.labels["event"]: s.value
        for s in families["bipsync_tenant_breaker"].samples
        if s.name == "bipsync_tenant_breaker_total"
    }


def delta(after: dict[str, float], before: dict[str, float], event: str) -> float:
    return after.get(event, 0) - before.get(event, 0)


def open_the_breaker(sandbox: Sandbox, world: SyncWorld, connections: list[Connection]) -> None:
    sandbox.set_fault("status", status=503, tenant=world.tenant, grant_type="refresh_token")
    result = sweep.refresh_batch(world.tenant, items_of(connections))
    assert sum(result.outcomes.values()) == 3, result


def test_repeated_server_errors_open_the_tenants_breaker_until_one_probe_finds_it_working(
    sandbox: Sandbox, world: SyncWorld, team: Team, alice: User, bob: User
) -> None:
    connections = due_connections(world, team, alice, 6)
    before_events = breaker_events()
    before = refresh_requests(sandbox, world)
    sandbox.set_fault("status", status=503, tenant=world.tenant, grant_type="refresh_token")

    first = sweep.refresh_batch(world.tenant, items_of(connections))

    # Three server errors, then the breaker stops the batch before its fourth request.
    assert refresh_requests(sandbox, world) - before == 3
    assert first.outcomes == {"temporarily_unavailable": 3}
    assert first.waited == breaker.TENANT_FAILING
    assert len(first.remaining) == 3
    assert COOLDOWN - 1 <= first.retry_in <= COOLDOWN + 2
    assert delta(breaker_events(), before_events, "opened") == 1

    # Inline callers hear nothing from Bipsync either: a still-valid token is handed out, an
    # expired one is refused at once with the breaker's sentence.
    nearly = user_connection(world, team, bob, expires_in=timedelta(seconds=30))
    assert tokens.get_access_token(nearly) == nearly.access_token
    erin = User.objects.create_user("erin@x.example")
    expired = user_connection(world, team, erin, expires_in=timedelta(seconds=-5))
    with pytest.raises(tokens.TokenTemporarilyUnavailable) as refused:
        tokens.get_access_token(expired)
    assert refused.value.code == breaker.TENANT_FAILING
    assert refused.value.retry_at is not None
    assert refused.value.retry_at > timezone.now()
    assert f"Bipsync {world.tenant} is failing since" in refused.value.message
    assert refresh_requests(sandbox, world) - before == 3

    # Every member of the team sees it on the team's pages.
    for person in (alice, bob):
        for page in (f"/teams/{team.slug}/connections/", f"/teams/{team.slug}/sync/"):
            body = signed_in(person).get(page).content.decode()
            assert f"Bipsync {world.tenant} is failing since" in body

    # After the cool-down, and with Bipsync working again, the queued batch goes through: its
    # first request is the probe, whose success closes the breaker for everyone.
    sandbox.clear_faults()
    time.sleep(COOLDOWN + 0.2)
    second = sweep.refresh_batch(world.tenant, first.remaining)

    assert second.outcomes == {"refreshed": 3}
    assert delta(breaker_events(), before_events, "closed") == 1
    stale = expired.access_token
    assert tokens.get_access_token(expired) != stale
    body = signed_in(alice).get(f"/teams/{team.slug}/connections/").content.decode()
    assert "is failing since" not in body


def test_after_the_cool_down_one_probe_goes_out_and_its_failure_opens_the_breaker_again(
    sandbox: Sandbox, world: SyncWorld, team: Team, alice: User
) -> None:
    connections = due_connections(world, team, alice, 5)
    open_the_breaker(sandbox, world, connections[:3])
    (opened,) = breaker.outages([world.tenant])
    time.sleep(COOLDOWN + 0.2)
    before = refresh_requests(sandbox, world)
    # Bipsync answers slowly now: while the probe is in flight, the others must not send.
    sandbox.set_fault("slow", delay_ms=1000, tenant=world.tenant, grant_type="refresh_token")
    errors: list[BaseException] = []

    def inline(conn: Connection) -> None:
        from django.db import connection as db_connection

        Connection.objects.filter(pk=conn.pk).update(access_expires_at=timezone.now())
        try:
            tokens.get_access_token(conn)
        except tokens.TokenError as error:
            errors.append(error)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=inline, args=(c,)) for c in connections[3:]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # One probe reached Bipsync (and met the 503 behind the delay); the other caller was told
    # to wait, and the breaker is open again with its first "since".
    assert refresh_requests(sandbox, world) - before == 1
    assert sorted(getattr(e, "code", "") for e in errors) == sorted(
        ["temporarily_unavailable", breaker.TENANT_FAILING]
    )
    (reopened,) = breaker.outages([world.tenant])
    assert reopened.since == opened.since
    assert reopened.until > opened.until
    # Nor does a caller whose token Bipsync's API just rejected.
    rejected = user_connection(world, team, User.objects.create_user("erin@x.example"))
    with pytest.raises(tokens.TokenTemporarilyUnavailable) as still:
        tokens.refresh_after_rejection(rejected, rejected.access_token or "")
    assert still.value.code == breaker.TENANT_FAILING
    assert refresh_requests(sandbox, world) - before == 1


def test_other_tenants_are_not_held_back_by_one_tenants_breaker(
    sandbox: Sandbox, world: SyncWorld, team: Team, alice: User, partner: Settings
) -> None:
    connections = due_connections(world, team, alice, 3)
    open_the_breaker(sandbox, world, connections)
    other = make_sync_world(sandbox)
    try:
        partner.BIPSYNC_USER_CLIENT_ID = other.world.user_app.client_id
        partner.BIPSYNC_USER_CLIENT_SECRET = other.world.user_app.client_secret
        elsewhere = user_connection(
            other, team, User.objects.create_user("dora@x.example"), expires_in=timedelta(0)
        )
        stale = elsewhere.access_token
        assert tokens.get_access_token(elsewhere) != stale
        assert breaker.outages([other.tenant, world.tenant])[0].tenant == world.tenant
    finally:
        other.world.http.close()


def test_with_redis_away_the_breaker_lets_refreshes_through(
    sandbox: Sandbox, world: SyncWorld, team: Team, alice: User, partner: Settings
) -> None:
    conn = user_connection(world, team, alice, expires_in=timedelta(0))
    stale = conn.access_token
    with socket.socket() as probe:  # a port nothing listens on: Redis refuses at once
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    partner.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
    before = refresh_requests(sandbox, world)

    assert tokens.get_access_token(conn) != stale

    assert refresh_requests(sandbox, world) - before == 1
    assert breaker.outages([world.tenant]) == []


def test_failures_with_a_working_answer_between_them_do_not_open_the_breaker(
    sandbox: Sandbox, world: SyncWorld, team: Team, alice: User
) -> None:
    connections = due_connections(world, team, alice, 5)
    before = refresh_requests(sandbox, world)
    # Two server errors, a working answer, two server errors: never three in a row.
    sandbox.set_fault(
        "status", status=503, tenant=world.tenant, grant_type="refresh_token", count=2
    )
    first = sweep.refresh_batch(world.tenant, items_of(connections[:3]))
    sandbox.set_fault(
        "status", status=503, tenant=world.tenant, grant_type="refresh_token", count=2
    )
    second = sweep.refresh_batch(world.tenant, items_of(connections[3:]))

    assert first.outcomes == {"temporarily_unavailable": 2, "refreshed": 1}
    assert second.outcomes == {"temporarily_unavailable": 2}
    assert second.remaining == []
    assert refresh_requests(sandbox, world) - before == 5
    assert breaker.outages([world.tenant]) == []
