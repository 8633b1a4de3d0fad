"""The sweep's refresh batches, in this process, against the sandbox over real HTTP: one request
in flight per batch however many threads work it, Retry-After honoured before the very next
request, a connection someone else is refreshing left alone, tokens sealed as on save()."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Membership, Team, User
from bipsync_partner.connections import sweep, tokens
from bipsync_partner.connections.crypto import VERSION
from bipsync_partner.connections.models import Connection, ConnectionEvent
from bipsync_partner.coordination import TenantGate
from tests.support.sandbox import Sandbox
from tests.sync.conftest import SyncWorld, make_sync_world, user_connection

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(sandbox: Sandbox, partner: Settings) -> Iterator[SyncWorld]:
    """A tenant of its own (faults and the tenant's gate cannot touch other tests), with the
    partner app pointed at its applications."""
    fresh = make_sync_world(sandbox)
    partner.BIPSYNC_USER_CLIENT_ID = fresh.world.user_app.client_id
    partner.BIPSYNC_USER_CLIENT_SECRET = fresh.world.user_app.client_secret
    yield fresh
    sandbox.clear_faults()
    fresh.world.http.close()


def due_connections(world: SyncWorld, team: Team, user: User, count: int) -> list[Connection]:
    """``user``'s connection and those of ``count - 1`` more members (one each per tenant),
    their access tokens inside the refresh window."""
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


def test_a_batch_worked_by_three_threads_still_sends_one_request_at_a_time(
    sandbox: Sandbox, world: SyncWorld, team: Team, alice: User, settings: Settings
) -> None:
    settings.REFRESH_BATCH_PIPELINE = 3
    connections = due_connections(world, team, alice, 6)
    before = refresh_requests(sandbox, world)
    # Each refresh takes 300 ms at Bipsync: six of them in flight one at a time take 1.8 s;
    # two or three at once would take 1.2 s or 0.6 s.
    sandbox.set_fault("slow", delay_ms=300, tenant=world.tenant, grant_type="refresh_token")
    started = time.monotonic()

    result = sweep.refresh_batch(world.tenant, items_of(connections))

    elapsed = time.monotonic() - started
    assert result.outcomes == {"refreshed": 6}
    assert sorted(result.done) == sorted(items_of(connections))
    assert result.remaining == []
    assert elapsed >= 6 * 0.3
    assert refresh_requests(sandbox, world) - before == 6
    for conn in connections:
        old_access = conn.access_token
        conn.refresh_from_db()
        assert conn.version == 1
        assert conn.status == Connection.Status.ACTIVE
        assert conn.access_token != old_access
        assert conn.events.filter(kind=ConnectionEvent.Kind.REFRESHED).count() == 1


def test_the_refresh_stores_the_rotated_tokens_encrypted_and_they_work(
    sandbox: Sandbox, world: SyncWorld, team: Team, alice: User
) -> None:
    (conn,) = due_connections(world, team, alice, 1)

    first = sweep.refresh_batch(world.tenant, items_of([conn]))

    assert first.outcomes == {"refreshed": 1}
    conn.refresh_from_db()
    with db_connection.cursor() as cursor:
        cursor.execute(
            "SELECT access_token, refresh_token FROM connections_connection WHERE id = %s",
            [conn.pk],
        )
        stored_access, stored_refresh = cursor.fetchone()
    assert conn.access_token
    assert conn.refresh_token
    assert stored_access.startswith(f"{VERSION}:")
    assert conn.access_token not in stored_access
    assert stored_refresh.startswith(f"{VERSION}:")
    assert conn.refresh_token not in stored_refresh
    assert conn.updated > conn.created
    # The stored refresh token is the live one at Bipsync: due again (an hour's token with four
    # minutes left), it rotates again.
    Connection.objects.filter(pk=conn.pk).update(
        access_expires_at=timezone.now() + timedelta(minutes=4),
        last_refreshed_at=timezone.now() - timedelta(minutes=56),
    )
    second = sweep.refresh_batch(world.tenant, [(str(conn.pk), 1)])
    assert second.outcomes == {"refreshed": 1}


def test_a_429_stops_the_batch_before_its_next_request_and_leaves_the_rest_queued(
    sandbox: Sandbox, world: SyncWorld, team: Team, alice: User, settings: Settings
) -> None:
    settings.REFRESH_BATCH_PIPELINE = 2
    connections = due_connections(world, team, alice, 4)
    before = refresh_requests(sandbox, world)
    sandbox.set_fault("rate_limit", delay_ms=3000, count=1, tenant=world.tenant)

    result = sweep.refresh_batch(world.tenant, items_of(connections))

    assert result.outcomes == {tokens.RATE_LIMITED: 1}
    assert len(result.done) == 1
    assert sorted(result.done + result.remaining) == sorted(items_of(connections))
    assert result.waited == "rate_limited_wait"
    assert result.retry_in >= 2.5
    # Only the request that got the 429 reached Bipsync; the second thread, already holding
    # its connection's lock, did not send.
    assert refresh_requests(sandbox, world) - before == 1
    assert TenantGate(world.tenant).remaining() > 2
    untouched = Connection.objects.filter(pk__in=[pk for pk, _ in result.remaining])
    assert {(c.version, c.status) for c in untouched} == {(0, Connection.Status.ACTIVE)}


def test_a_connection_another_process_is_refreshing_is_left_alone_at_once(
    sandbox: Sandbox, world: SyncWorld, team: Team, alice: User
) -> None:
    (conn,) = due_connections(world, team, alice, 1)
    holding, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        try:
            with transaction.atomic():
                Connection.objects.select_for_update().get(pk=conn.pk)
                holding.set()
                release.wait(10)
        finally:
            db_connection.close()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert holding.wait(10)
    before = refresh_requests(sandbox, world)
    started = time.monotonic()
    try:
        result = tokens.refresh_connection(conn.pk, expected_version=conn.version, wait=False)
    finally:
        release.set()
        holder.join()

    assert result.outcome == "in_progress"
    assert time.monotonic() - started < 1
    assert refresh_requests(sandbox, world) == before
    conn.refresh_from_db()
    assert conn.version == 0


def test_a_queued_version_that_was_rotated_meanwhile_is_not_refreshed_again(
    sandbox: Sandbox, world: SyncWorld, team: Team, alice: User
) -> None:
    (conn,) = due_connections(world, team, alice, 1)
    stale = (str(conn.pk), conn.version)
    sweep.refresh_batch(world.tenant, [stale])
    before = refresh_requests(sandbox, world)

    result = sweep.refresh_batch(world.tenant, [stale])

    assert result.outcomes == {"already_rotated": 1}
    assert refresh_requests(sandbox, world) == before
