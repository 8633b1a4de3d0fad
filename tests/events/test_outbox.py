"""The outbox: each event is written in the transaction of the change it describes (a rolled-back
change has none), with one delivery per enabled endpoint subscribed to its type; the changes come
from the real code paths (a sync run and a write against the sandbox, a disconnect)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.models import Model
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.connections import tokens
from bipsync_partner.connections.disconnect import disconnect
from bipsync_partner.connections.models import Connection, ConnectionEvent
from bipsync_partner.connections.signals import history_appended
from bipsync_partner.events.models import Delivery, Event
from bipsync_partner.feed.reading import current_cursor, read_changes
from bipsync_partner.writes import api
from bipsync_partner.writes.delivery import deliver, deliver_due
from tests.events.conftest import Receiver, add_endpoint
from tests.feed.waiting import eventually
from tests.support.sandbox import Sandbox
from tests.sync.conftest import SyncWorld, machine_connection, user_connection
from tests.sync.test_engine import new_run, run_to_end
from tests.writes.conftest import partner, service_account, world  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(transaction=True)


class Boom(Exception):
    pass


def test_an_event_rolls_back_with_its_change_and_goes_only_to_subscribed_enabled_endpoints(
    events_settings: Settings, receiver: Receiver, team: Team, alice: User
) -> None:
    wanted = add_endpoint(team, receiver, ["connection.connected"])
    add_endpoint(team, receiver, ["write.failed"])
    add_endpoint(team, receiver, ["connection.connected"], enabled=False)
    conn = Connection.objects.create(team=team, tenant="acme", kind=Connection.Kind.SERVICE_ACCOUNT)

    def connect_then_fail() -> None:
        with transaction.atomic():
            conn.record(ConnectionEvent.Kind.CONNECTED, alice, "Connected.")
            assert Event.objects.count() == 1  # written beside the history line...
            raise Boom

    with pytest.raises(Boom):
        connect_then_fail()
    assert not Event.objects.exists()  # ...and gone with it

    conn.record(ConnectionEvent.Kind.CONNECTED, alice, "Connected.")
    [event] = Event.objects.all()
    assert event.type == "connection.connected"
    assert event.uid.startswith("evt_")
    assert event.payload["data"]["connection"] == {
        "id": str(conn.pk),
        "kind": "service_account",
        "tenant": "acme",
        "label": conn.label,
        "status": conn.status,
    }
    assert set(event.payload) == {"type", "timestamp", "data"}
    assert list(Delivery.objects.values_list("endpoint_id", flat=True)) == [wanted.pk]


def test_a_sync_run_sends_sync_completed_with_its_counts_and_the_feed_cursor(
    events_settings: Settings,
    partner: Settings,  # noqa: F811
    sandbox: Sandbox,
    world: SyncWorld,  # noqa: F811
    receiver: Receiver,
    team: Team,
) -> None:
    add_endpoint(team, receiver, ["sync.completed"])
    sandbox.generate_research(world.tenant, world.team_id, 30, seed=3)
    conn = machine_connection(team, world)

    run = new_run(conn)
    run_to_end(run)

    [event] = Event.objects.filter(type="sync.completed")
    data = event.payload["data"]
    assert data["run"]["id"] == run.pk
    assert (data["run"]["seen"], data["run"]["created"], data["run"]["deleted"]) == (30, 30, 0)
    # The cursor is just past the run's changes: reading the feed up to it gets all 30.
    page = eventually(lambda: read_changes(team.pk, None, 100), lambda p: len(p.entries) >= 30)
    assert len(page.entries) == 30
    assert data["feed_cursor"] == page.next_cursor == current_cursor(team.pk)
    assert read_changes(team.pk, data["feed_cursor"], 100).entries == []


def test_a_write_sends_write_delivered_in_the_transaction_of_its_outcome(
    events_settings: Settings,
    partner: Settings,  # noqa: F811
    world: SyncWorld,  # noqa: F811
    receiver: Receiver,
    team: Team,
) -> None:
    add_endpoint(team, receiver, ["write.delivered", "write.failed"])
    service_account(team, world)
    write = api.create_note(team, external_id="n-1", title="Hello", author=world.world.admin.id)
    assert deliver(write.pk) == "delivered"

    [event] = Event.objects.filter(type="write.delivered")
    write.refresh_from_db()
    assert event.payload["data"]["write"]["id"] == str(write.uid)
    assert event.payload["data"]["write"]["bipsync_id"] == write.bipsync_id
    assert event.payload["data"]["write"]["external_id"] == {
        "source": write.external_source,
        "value": "n-1",
    }


def test_a_group_of_writes_gets_one_write_delivered_event_each(
    events_settings: Settings,
    partner: Settings,  # noqa: F811
    world: SyncWorld,  # noqa: F811
    receiver: Receiver,
    team: Team,
) -> None:
    add_endpoint(team, receiver, ["write.delivered"])
    service_account(team, world)
    partner.WRITES_GROUP_SIZE = 4
    writes = [
        api.create_note(team, external_id=f"g-{n}", title="Hello", author=world.world.admin.id)
        for n in range(4)
    ]
    assert deliver_due(team.pk).attempted == 4

    events = Event.objects.filter(type="write.delivered")
    by_write = {event.payload["data"]["write"]["id"]: event.payload["data"] for event in events}
    assert sorted(by_write) == sorted(str(write.uid) for write in writes)
    for write in writes:
        write.refresh_from_db()
        assert by_write[str(write.uid)]["write"]["bipsync_id"] == write.bipsync_id != ""
    assert Delivery.objects.filter(event__in=events).count() == 4


def dead_grant(world: SyncWorld, team: Team, user: User) -> Connection:  # noqa: F811
    """A member's connection whose access token has expired and whose refresh token Bipsync
    never issued: its next refresh is refused with invalid_grant."""
    conn = user_connection(world, team, user, expires_in=timedelta(seconds=-1))
    conn.refresh_token = "a-refresh-token-bipsync-never-issued"
    conn.save(update_fields=["refresh_token"])
    return conn


def test_a_dead_grant_and_a_disconnect_become_events_in_their_own_transactions(
    events_settings: Settings,
    partner: Settings,  # noqa: F811
    world: SyncWorld,  # noqa: F811
    receiver: Receiver,
    team: Team,
    alice: User,
) -> None:
    add_endpoint(team, receiver, ["connection.disconnected", "connection.needs_reconnect"])
    conn = dead_grant(world, team, alice)

    with pytest.raises(tokens.ReconnectRequired):
        tokens.get_access_token(conn)
    conn.refresh_from_db()
    assert conn.status == Connection.Status.NEEDS_RECONNECT
    disconnect(conn, alice)

    types = list(
        Event.objects.order_by("id").values_list("type", "payload__data__connection__status")
    )
    assert types == [
        ("connection.needs_reconnect", "needs_reconnect"),
        ("connection.disconnected", "disconnected"),
    ]
    event = Event.objects.get(type="connection.needs_reconnect")
    assert event.payload["data"]["reason"] == conn.last_error_message
    # Written by the token service's own transaction, with the history line of the dead grant
    # (the same savepoint, so the same transaction id), not in one of its own after the commit.
    assert _written_by(Event, event.pk) == _written_by(
        ConnectionEvent,
        ConnectionEvent.objects.get(connection=conn, kind=ConnectionEvent.Kind.NEEDS_RECONNECT).pk,
    )


def _written_by(model: type[Model], pk: int) -> str:
    """The id of the transaction that wrote the row (PostgreSQL's ``xmin``)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT xmin::text FROM {model._meta.db_table} WHERE id = %s",
            [pk],
        )
        return str(cursor.fetchone()[0])


def test_a_failing_receiver_of_the_dead_grants_history_loses_its_line_never_the_grants_state(
    events_settings: Settings,
    partner: Settings,  # noqa: F811
    world: SyncWorld,  # noqa: F811
    receiver: Receiver,
    team: Team,
    alice: User,
) -> None:
    add_endpoint(team, receiver, ["connection.needs_reconnect"])
    conn = dead_grant(world, team, alice)

    def broken(**kwargs: object) -> None:
        raise RuntimeError("a receiver's bug")

    history_appended.connect(broken, dispatch_uid="test.broken")
    try:
        with pytest.raises(tokens.ReconnectRequired):
            tokens.get_access_token(conn)
    finally:
        history_appended.disconnect(dispatch_uid="test.broken")

    conn.refresh_from_db()
    assert conn.status == Connection.Status.NEEDS_RECONNECT  # what a person must know, kept
    assert conn.last_error_message
    assert not ConnectionEvent.objects.filter(
        connection=conn, kind=ConnectionEvent.Kind.NEEDS_RECONNECT
    ).exists()
    assert not Event.objects.filter(type="connection.needs_reconnect").exists()
