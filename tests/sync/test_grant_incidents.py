"""The fleet-wide guard against the sandbox over real HTTP: a burst of invalid_grant or
invalid_client across many connections is an incident (operators alerted, tokens kept for a
retry), not that many connections needing a reconnect."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.mail import EmailMessage
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from pytest_django.fixtures import Settings

from accounts.models import Membership, Team, User
from bipsync_partner import coordination
from bipsync_partner.connections import incidents, sweep, tokens
from bipsync_partner.connections.models import Connection, ConnectionEvent
from bipsync_partner.connections.notifications import ReconnectNotice
from tests.support.sandbox import Sandbox
from tests.sync.conftest import SyncWorld, make_sync_world, user_connection

pytestmark = pytest.mark.django_db(transaction=True)

OPERATORS = ["ops@partner.example"]


@pytest.fixture
def world(sandbox: Sandbox, partner: Settings) -> Iterator[SyncWorld]:
    """A tenant of its own; three refused connections within a minute are an incident; the
    fleet-wide count starts from nothing (other tests of this session refuse grants too)."""
    fresh = make_sync_world(sandbox)
    partner.BIPSYNC_USER_CLIENT_ID = fresh.world.user_app.client_id
    partner.BIPSYNC_USER_CLIENT_SECRET = fresh.world.user_app.client_secret
    partner.BIPSYNC_GRANT_INCIDENT_THRESHOLD = 3
    partner.BIPSYNC_GRANT_INCIDENT_WINDOW_SECONDS = 60
    partner.BIPSYNC_GRANT_INCIDENT_RETRY_SECONDS = 40
    partner.REFRESH_BATCH_PIPELINE = 1
    partner.METRICS_BEARER_TOKEN = None
    partner.OPERATOR_EMAILS = OPERATORS
    coordination.client().delete(incidents._refusals_key(), incidents._incident_key())
    yield fresh
    coordination.client().delete(incidents._refusals_key(), incidents._incident_key())
    fresh.world.http.close()


def due_connections(
    world: SyncWorld, team: Team, count: int, *, name: str = "analyst"
) -> list[Connection]:
    members = [User.objects.create_user(f"{name}{i}@example.com", "pw") for i in range(count)]
    for member in members:
        team.add_member(member, Membership.Role.MEMBER)
    return [
        user_connection(world, team, member, expires_in=timedelta(minutes=4)) for member in members
    ]


def items_of(connections: list[Connection]) -> list[sweep.Item]:
    return [(str(c.pk), c.version) for c in connections]


def incident_events() -> dict[str, float]:
    body = Client().get("/metrics").content.decode()
    families = {f.name: f for f in text_string_to_metric_families(body)}
    return {
        s.labels["event"]: s.value
        for s in families["bipsync_grant_incidents"].samples
        if s.name == "bipsync_grant_incidents_total"
    }


def to_operators(outbox: list[EmailMessage]) -> list[EmailMessage]:
    return [m for m in outbox if m.to == OPERATORS]


def test_a_burst_of_invalid_grant_is_an_incident_and_no_connection_is_left_needing_a_reconnect(
    sandbox: Sandbox,
    world: SyncWorld,
    team: Team,
    alice: User,
    mailoutbox: list[EmailMessage],
    caplog: pytest.LogCaptureFixture,
) -> None:
    connections = due_connections(world, team, 5)
    kept = {c.pk: c.refresh_token for c in connections}
    before = incident_events()
    # Bipsync loses its grants (a restore of its token store, say): every refresh is refused.
    sandbox.revoke_tokens(world.world.user_app.client_id)

    with caplog.at_level(logging.ERROR, logger="bipsync_partner.connections.incidents"):
        result = sweep.refresh_batch(world.tenant, items_of(connections))

    # The first two were judged on their own (needs_reconnect); the third made it an incident,
    # and the first two were given the same hold.
    assert sum(result.outcomes.values()) == 5
    assert result.outcomes["needs_reconnect"] == 2
    later = timezone.now()
    for conn in connections:
        stored = Connection.objects.get(pk=conn.pk)
        assert stored.status == Connection.Status.FAILING, stored.last_error_message
        assert stored.refresh_token == kept[conn.pk]
        assert "incident at Bipsync" in stored.last_error_message
        assert stored.next_retry_at is not None
        assert later + timedelta(seconds=15) < stored.next_retry_at <= later + timedelta(seconds=40)
        assert stored.events.filter(kind=ConnectionEvent.Kind.REFRESH_FAILED).exists()
    assert not ReconnectNotice.objects.filter(
        connection__in=connections, cleared_at__isnull=True
    ).exists()
    # The operators are alerted once: a log line, the metric, one email.
    (alert,) = to_operators(mailoutbox)
    assert "Bipsync refused the tokens of 3 connections" in alert.subject
    assert any("Grant incident" in r.getMessage() for r in caplog.records)
    after = incident_events()
    assert after.get("started", 0) - before.get("started", 0) == 1
    assert after.get("held", 0) - before.get("held", 0) == 3

    # Inline callers are told to wait, not to reconnect, while the incident lasts.
    (straggler,) = due_connections(world, team, 1, name="straggler")
    Connection.objects.filter(pk=straggler.pk).update(access_expires_at=timezone.now())
    sandbox.revoke_tokens(world.world.user_app.client_id)
    with pytest.raises(tokens.TokenTemporarilyUnavailable) as held:
        tokens.get_access_token(straggler)
    assert "incident at Bipsync" in held.value.message
    assert Connection.objects.get(pk=straggler.pk).status == Connection.Status.FAILING
    assert len(to_operators(mailoutbox)) == 1


def test_a_wrong_client_secret_deployed_is_an_incident_whose_connections_recover_once_fixed(
    sandbox: Sandbox,
    world: SyncWorld,
    team: Team,
    partner: Settings,
    mailoutbox: list[EmailMessage],
) -> None:
    connections = due_connections(world, team, 4)
    right_secret = partner.BIPSYNC_USER_CLIENT_SECRET
    partner.BIPSYNC_USER_CLIENT_SECRET = "not-the-secret-bipsync-issued"

    held = sweep.refresh_batch(world.tenant, items_of(connections))

    assert held.outcomes == {"invalid_client": 4}
    (alert,) = to_operators(mailoutbox)
    assert "(invalid_client)" in alert.subject
    stored = list(Connection.objects.filter(pk__in=[c.pk for c in connections]))
    assert {c.status for c in stored} == {Connection.Status.FAILING}
    assert sum("incident at Bipsync" in c.last_error_message for c in stored) == 2

    # The right secret is deployed; when their retry comes (moved here, not waited for), every
    # connection refreshes with the refresh token it kept.
    partner.BIPSYNC_USER_CLIENT_SECRET = right_secret
    Connection.objects.filter(pk__in=[c.pk for c in connections]).update(
        next_retry_at=timezone.now()
    )
    recovered = sweep.refresh_batch(world.tenant, [(str(c.pk), c.version) for c in stored])

    assert recovered.outcomes == {"refreshed": 4}
    assert set(
        Connection.objects.filter(pk__in=[c.pk for c in connections]).values_list(
            "status", flat=True
        )
    ) == {Connection.Status.ACTIVE}
