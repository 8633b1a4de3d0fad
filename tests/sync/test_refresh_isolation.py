"""One connection's fault stays that connection's: a refresh batch against the sandbox over real
HTTP, with rows whose ciphertext does not open and an application missing from the settings,
refreshes every healthy neighbour and records the fault on the faulty connection."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from pytest_django.fixtures import Settings

from accounts.models import Membership, Team, User
from bipsync_partner.connections import failures, sweep, tasks
from bipsync_partner.connections.models import Connection, ConnectionEvent
from tests.support.sandbox import Sandbox
from tests.sync.conftest import SyncWorld, make_sync_world, user_connection

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(sandbox: Sandbox, partner: Settings) -> Iterator[SyncWorld]:
    fresh = make_sync_world(sandbox)
    partner.BIPSYNC_USER_CLIENT_ID = fresh.world.user_app.client_id
    partner.BIPSYNC_USER_CLIENT_SECRET = fresh.world.user_app.client_secret
    yield fresh
    fresh.world.http.close()


def members_connections(world: SyncWorld, team: Team, user: User, count: int) -> list[Connection]:
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


def copy_refresh_ciphertext(source: Connection, target: Connection) -> None:
    """Put ``source``'s sealed refresh token into ``target``'s row, as a restore from another
    row or a hand edit would: the ciphertext is bound to its own row, so it does not open."""
    with db_connection.cursor() as cursor:
        cursor.execute(
            "UPDATE connections_connection SET refresh_token = "
            "(SELECT refresh_token FROM connections_connection WHERE id = %s) WHERE id = %s",
            [source.pk, target.pk],
        )


def service_account_connection(world: SyncWorld, team: Team) -> Connection:
    return Connection.objects.create(
        team=team,
        tenant=world.tenant,
        kind=Connection.Kind.SERVICE_ACCOUNT,
        scopes=" ".join(world.world.service_app.scopes),
        access_token="at-service",
        refresh_token="rt-service",
        access_expires_at=timezone.now() + timedelta(minutes=3),
    )


def refresh_outcomes() -> dict[str, float]:
    body = Client().get("/metrics").content.decode()
    families = {f.name: f for f in text_string_to_metric_families(body)}
    return {
        s.labels["outcome"]: s.value
        for s in families["bipsync_token_refreshes"].samples
        if s.name == "bipsync_token_refreshes_total"
    }


def test_a_batch_refreshes_every_healthy_connection_past_ones_that_cannot_be_refreshed(
    sandbox: Sandbox, world: SyncWorld, team: Team, alice: User, settings: Settings
) -> None:
    settings.METRICS_BEARER_TOKEN = None
    settings.REFRESH_BATCH_PIPELINE = 2
    healthy = members_connections(world, team, alice, 4)
    undecryptable = members_connections(world, team, User.objects.create_user("eve@x.example"), 1)[
        0
    ]
    copy_refresh_ciphertext(healthy[0], undecryptable)
    unconfigured = service_account_connection(world, team)
    # This worker has no service-account application configured.
    settings.BIPSYNC_SERVICE_CLIENT_ID = None
    # The faulty connections come first, where they used to stop everything behind them.
    items = [(str(c.pk), c.version) for c in [undecryptable, unconfigured, *healthy]]
    before = refresh_outcomes()

    summary = tasks.refresh_batch_task(world.tenant, [list(item) for item in items])

    assert "4 refreshed" in summary
    after = refresh_outcomes()
    for outcome, count in [
        ("refreshed", 4),
        (failures.UNDECRYPTABLE, 1),
        (failures.CLIENT_NOT_CONFIGURED, 1),
    ]:
        assert after.get(outcome, 0) - before.get(outcome, 0) == count
    for conn in healthy:
        old_access = conn.access_token
        conn.refresh_from_db()
        assert (conn.status, conn.version) == (Connection.Status.ACTIVE, 1)
        assert conn.access_token != old_access
    for conn, code, words in [
        (undecryptable, failures.UNDECRYPTABLE, "could not be decrypted"),
        (unconfigured, failures.CLIENT_NOT_CONFIGURED, "BIPSYNC_SERVICE_CLIENT_ID is not set"),
    ]:
        stored = Connection.objects.get(pk=conn.pk)
        assert stored.status == Connection.Status.FAILING
        assert stored.last_error_code == code
        assert words in stored.last_error_message
        assert stored.consecutive_failures == 1
        assert stored.next_retry_at is not None
        assert stored.next_retry_at > timezone.now()
        event = stored.events.get()
        assert (event.kind, event.message) == (
            ConnectionEvent.Kind.REFRESH_FAILED,
            stored.last_error_message,
        )
    # Every marker is released: nothing stays queued, and the faulty ones back off instead of
    # coming back in the next sweep.
    assert not any(sweep.queued_markers().held(sweep.marker_name(*item)) for item in items)
    due = set(sweep.due_connections(timezone.now()).values_list("pk", flat=True))
    assert due.isdisjoint({undecryptable.pk, unconfigured.pk})


def test_a_row_the_database_refuses_to_write_does_not_stop_the_rest_of_its_batch(
    sandbox: Sandbox, world: SyncWorld, team: Team, alice: User, settings: Settings
) -> None:
    settings.REFRESH_BATCH_PIPELINE = 2
    refused, *healthy = members_connections(world, team, alice, 4)
    # A real fault: PostgreSQL refuses every write to one row (a trigger), so even recording
    # the failure on it fails; the batch must still go on.
    with db_connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION test_refuse_row() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN IF OLD.id = %s::uuid THEN RAISE EXCEPTION 'injected fault'; END IF; "
            "RETURN NEW; END $$",
            [str(refused.pk)],
        )
        cursor.execute(
            "CREATE TRIGGER test_refuse_row BEFORE UPDATE ON connections_connection "
            "FOR EACH ROW EXECUTE FUNCTION test_refuse_row()"
        )
    try:
        result = sweep.refresh_batch(world.tenant, items_of([refused, *healthy]))
    finally:
        with db_connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER test_refuse_row ON connections_connection")
            cursor.execute("DROP FUNCTION test_refuse_row()")

    assert result.outcomes == {"refreshed": 3, failures.UNEXPECTED: 1}
    assert result.remaining == []
    for conn in healthy:
        conn.refresh_from_db()
        assert (conn.status, conn.version) == (Connection.Status.ACTIVE, 1)
