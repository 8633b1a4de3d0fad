"""The token service against the running sandbox, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.db import transaction
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.connections import tokens
from bipsync_partner.connections.models import Connection, ConnectionEvent
from bipsync_partner.connections.signals import connection_needs_reconnect
from tests.support.sandbox import Sandbox, SandboxWorld

pytestmark = pytest.mark.django_db


@pytest.fixture
def partner_settings(settings: Settings, sandbox: Sandbox, sandbox_world: SandboxWorld) -> Settings:
    """Point the partner app at the sandbox and this world's applications."""
    configure_partner(settings, sandbox, sandbox_world)
    return settings


def configure_partner(settings: Any, sandbox: Sandbox, world: SandboxWorld) -> None:
    settings.BIPSYNC_API_BASE_TEMPLATE = sandbox.api_template
    settings.BIPSYNC_WEB_BASE_TEMPLATE = sandbox.web_template
    settings.BIPSYNC_ALLOW_INSECURE_LOOPBACK = True
    settings.BIPSYNC_USER_CLIENT_ID = world.user_app.client_id
    settings.BIPSYNC_USER_CLIENT_SECRET = world.user_app.client_secret
    settings.BIPSYNC_SERVICE_CLIENT_ID = world.service_app.client_id
    settings.BIPSYNC_SERVICE_CLIENT_SECRET = world.service_app.client_secret
    settings.BIPSYNC_PUBLIC_CLIENT_ID = world.device_app.client_id


def user_connection(world: SandboxWorld, team: Team, user: User, *, expired: bool) -> Connection:
    """A user connection holding tokens from a real authorization at the sandbox."""
    issued = world.connect(world.user_app)
    lifetime = timedelta(seconds=-5) if expired else timedelta(seconds=int(issued["expires_in"]))
    return Connection.objects.create(
        team=team,
        user=user,
        created_by=user,
        tenant=world.tenant,
        kind=Connection.Kind.USER,
        subject_id=world.admin.id,
        scopes=" ".join(world.user_app.scopes),
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        access_expires_at=timezone.now() + lifetime,
    )


def refreshes(sandbox: Sandbox, world: SandboxWorld, outcome: str | None = None) -> int:
    return sandbox.token_requests(world.user_app.client_id, "refresh_token", outcome=outcome)


def api_accepts(world: SandboxWorld, access_token: str) -> bool:
    response = httpx.get(
        world.api_base + "/v1/research",
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10,
    )
    return response.status_code == 200


@pytest.fixture
def reconnect_signals() -> Iterator[list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    def receiver(sender: object, **kwargs: Any) -> None:
        received.append(kwargs)

    connection_needs_reconnect.connect(receiver)
    yield received
    connection_needs_reconnect.disconnect(receiver)


def test_it_hands_out_a_fresh_token_without_calling_bipsync(
    partner_settings: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
) -> None:
    conn = user_connection(sandbox_world, team, alice, expired=False)
    stored = conn.access_token
    assert tokens.get_access_token(conn) == stored
    assert refreshes(sandbox, sandbox_world, outcome=None) == 0


def test_it_refreshes_an_expired_token_and_stores_the_rotation(
    partner_settings: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
) -> None:
    conn = user_connection(sandbox_world, team, alice, expired=True)
    old_access, old_refresh, version = conn.access_token, conn.refresh_token, conn.version

    new_access = tokens.get_access_token(conn)

    assert new_access != old_access
    assert refreshes(sandbox, sandbox_world) == 1
    stored = Connection.objects.get(pk=conn.pk)
    assert stored.access_token == new_access
    assert stored.refresh_token not in (None, old_refresh)
    assert stored.version == version + 1
    assert stored.access_expires_at is not None
    assert stored.access_expires_at > timezone.now()
    assert stored.refresh_expires_at is not None
    assert stored.last_refreshed_at is not None
    assert stored.status == Connection.Status.ACTIVE
    assert api_accepts(sandbox_world, new_access)
    # Bipsync rotated: the old refresh token is dead now.
    assert sandbox_world.refresh(sandbox_world.user_app, old_refresh or "").status_code == 400
    (event,) = stored.events.all()
    assert event.kind == ConnectionEvent.Kind.REFRESHED
    assert new_access not in event.message
    # The caller's instance is up to date too.
    assert conn.version == stored.version


def test_invalid_grant_makes_the_connection_need_reconnecting(
    partner_settings: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
    reconnect_signals: list[dict[str, Any]],
) -> None:
    conn = user_connection(sandbox_world, team, alice, expired=True)
    sandbox.revoke_tokens(sandbox_world.user_app.client_id)

    with pytest.raises(tokens.ReconnectRequired) as info:
        tokens.get_access_token(conn)

    assert str(info.value) == tokens.INVALID_GRANT_SENTENCE
    stored = Connection.objects.get(pk=conn.pk)
    assert stored.status == Connection.Status.NEEDS_RECONNECT
    assert stored.last_error_code == "invalid_grant"
    assert stored.last_error_message == tokens.INVALID_GRANT_SENTENCE
    assert stored.events.first().kind == ConnectionEvent.Kind.NEEDS_RECONNECT  # type: ignore[union-attr]
    assert [s["reason"] for s in reconnect_signals] == [tokens.INVALID_GRANT_SENTENCE]
    # And nobody calls Bipsync for it again.
    with pytest.raises(tokens.ReconnectRequired):
        tokens.get_access_token(conn)
    assert tokens.refresh_connection(conn.pk).outcome == "skipped"
    assert refreshes(sandbox, sandbox_world, outcome=None) == 1


def test_a_server_error_backs_off_and_never_needs_reconnecting(
    partner_settings: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
) -> None:
    client_id = sandbox_world.user_app.client_id
    conn = user_connection(sandbox_world, team, alice, expired=True)
    sandbox.set_fault("status", status=503, client_id=client_id, count=1)

    before = timezone.now()
    with pytest.raises(tokens.TokenTemporarilyUnavailable) as info:
        tokens.get_access_token(conn)

    stored = Connection.objects.get(pk=conn.pk)
    assert stored.status == Connection.Status.FAILING
    assert stored.consecutive_failures == 1
    assert stored.next_retry_at is not None
    assert stored.next_retry_at > before
    assert info.value.retry_at == stored.next_retry_at
    assert "HTTP 503" in stored.last_error_message
    assert stored.events.first().kind == ConnectionEvent.Kind.REFRESH_FAILED  # type: ignore[union-attr]

    # While backing off, callers get an answer at once and Bipsync hears nothing.
    for _ in range(5):
        with pytest.raises(tokens.TokenTemporarilyUnavailable):
            tokens.get_access_token(conn)
    assert tokens.refresh_connection(conn.pk).outcome == "backing_off"
    assert refreshes(sandbox, sandbox_world, outcome=None) == 1

    # Once the back-off has passed (moved, not slept), the next call refreshes.
    Connection.objects.filter(pk=conn.pk).update(next_retry_at=timezone.now())
    fresh = tokens.get_access_token(conn)
    assert api_accepts(sandbox_world, fresh)
    stored = Connection.objects.get(pk=conn.pk)
    assert stored.status == Connection.Status.ACTIVE
    assert (stored.consecutive_failures, stored.next_retry_at, stored.last_error_code) == (
        0,
        None,
        "",
    )


def test_a_still_valid_token_is_served_while_the_refresh_fails(
    partner_settings: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
) -> None:
    conn = user_connection(sandbox_world, team, alice, expired=False)
    stored = conn.access_token
    # Within the leeway, not yet expired.
    Connection.objects.filter(pk=conn.pk).update(
        access_expires_at=timezone.now() + timedelta(seconds=20)
    )
    sandbox.set_fault("close", client_id=sandbox_world.user_app.client_id, count=1)

    assert tokens.get_access_token(conn) == stored
    assert conn.status == Connection.Status.FAILING
    assert conn.last_error_code == "network_error"


def test_back_off_grows_with_jitter_and_honours_retry_after(settings: Settings) -> None:
    settings.BIPSYNC_REFRESH_BACKOFF_BASE_SECONDS = 10
    settings.BIPSYNC_REFRESH_BACKOFF_CAP_SECONDS = 100
    delays = [tokens.backoff_delay(3).total_seconds() for _ in range(50)]
    assert all(20 <= d <= 40 for d in delays)
    assert len(set(delays)) > 1
    assert all(50 <= tokens.backoff_delay(10).total_seconds() <= 100 for _ in range(20))
    assert tokens.backoff_delay(1, retry_after=300).total_seconds() == 300


def test_a_lost_refresh_reply_ends_in_needs_reconnect_with_a_sentence_and_no_retry_storm(
    partner_settings: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
    reconnect_signals: list[dict[str, Any]],
) -> None:
    conn = user_connection(sandbox_world, team, alice, expired=True)
    sandbox.set_fault("lose_response", client_id=sandbox_world.user_app.client_id, count=1)

    # Bipsync rotates and commits, but the reply never arrives: for now that looks transient.
    with pytest.raises(tokens.TokenTemporarilyUnavailable):
        tokens.get_access_token(conn)
    assert Connection.objects.get(pk=conn.pk).status == Connection.Status.FAILING
    # Callers during the back-off do not reach Bipsync.
    for _ in range(10):
        with pytest.raises(tokens.TokenTemporarilyUnavailable):
            tokens.get_access_token(conn)

    # The next attempt spends the old refresh token, which Bipsync already rotated.
    Connection.objects.filter(pk=conn.pk).update(next_retry_at=timezone.now())
    with pytest.raises(tokens.ReconnectRequired) as info:
        tokens.get_access_token(conn)

    assert str(info.value) == tokens.LOST_REPLY_SENTENCE
    assert "reply never arrived" in str(info.value)
    stored = Connection.objects.get(pk=conn.pk)
    assert stored.status == Connection.Status.NEEDS_RECONNECT
    assert stored.last_error_message == tokens.LOST_REPLY_SENTENCE
    assert [s["reason"] for s in reconnect_signals] == [tokens.LOST_REPLY_SENTENCE]

    # No retry storm: neither callers nor the sweep go back to Bipsync.
    for _ in range(10):
        with pytest.raises(tokens.ReconnectRequired):
            tokens.get_access_token(conn)
        assert tokens.refresh_connection(conn.pk).outcome == "skipped"
    assert refreshes(sandbox, sandbox_world, outcome=None) == 2
    kinds = list(stored.events.order_by("created", "id").values_list("kind", flat=True))
    assert kinds == [ConnectionEvent.Kind.REFRESH_FAILED, ConnectionEvent.Kind.NEEDS_RECONNECT]


def test_refresh_connection_refreshes_only_when_due(
    partner_settings: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
) -> None:
    conn = user_connection(sandbox_world, team, alice, expired=False)
    assert tokens.refresh_connection(conn.pk).outcome == "not_due"
    result = tokens.refresh_connection(conn.pk, access_window=timedelta(hours=2))
    assert result.outcome == "refreshed"
    assert refreshes(sandbox, sandbox_world) == 1
    # A refresh token close to its end is renewed even when the access token is fine.
    Connection.objects.filter(pk=conn.pk).update(
        refresh_expires_at=timezone.now() + timedelta(hours=1)
    )
    assert tokens.refresh_connection(conn.pk).outcome == "refreshed"
    assert refreshes(sandbox, sandbox_world) == 2
    assert tokens.refresh_connection("00000000-0000-0000-0000-000000000000").outcome == "skipped"


def test_refresh_after_rejection_gets_a_newer_token_once(
    partner_settings: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
) -> None:
    conn = user_connection(sandbox_world, team, alice, expired=False)
    rejected = conn.access_token
    assert rejected is not None
    newer = tokens.refresh_after_rejection(conn, rejected)
    assert newer != rejected
    # A second process that saw the same rejection gets the newer token without a refresh.
    other = Connection.objects.get(pk=conn.pk)
    assert tokens.refresh_after_rejection(other, rejected) == newer
    assert refreshes(sandbox, sandbox_world) == 1


def test_a_connection_without_refresh_token_needs_reconnecting_when_expired(
    partner_settings: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
) -> None:
    conn = user_connection(sandbox_world, team, alice, expired=True)
    conn.refresh_token = None
    conn.save()
    with pytest.raises(tokens.ReconnectRequired, match="no refresh token"):
        tokens.get_access_token(conn)
    assert refreshes(sandbox, sandbox_world, outcome=None) == 0


def test_a_disconnected_connection_hands_out_nothing(
    partner_settings: Settings, sandbox_world: SandboxWorld, team: Team, alice: User
) -> None:
    conn = user_connection(sandbox_world, team, alice, expired=False)
    conn.status = Connection.Status.DISCONNECTED
    conn.save(update_fields=[*conn.wipe_tokens(), "status"])
    with pytest.raises(tokens.ReconnectRequired, match="disconnected"):
        tokens.get_access_token(conn)


def machine_connection(world: SandboxWorld, team: Team, *, secret: str | None = None) -> Connection:
    return Connection.objects.create(
        team=team,
        tenant=world.tenant,
        kind=Connection.Kind.CLIENT_CREDENTIALS,
        client_id=world.team_app.client_id,
        client_secret=secret or world.team_app.client_secret,
        bipsync_team_id=world.team_id,
        scopes="rest_api:read",
    )


def test_a_machine_connection_acquires_a_token_and_a_new_one_when_it_expires(
    partner_settings: Settings, sandbox: Sandbox, sandbox_world: SandboxWorld, team: Team
) -> None:
    conn = machine_connection(sandbox_world, team)
    first = tokens.get_access_token(conn)
    assert api_accepts(sandbox_world, first)
    assert tokens.get_access_token(conn) == first
    Connection.objects.filter(pk=conn.pk).update(access_expires_at=timezone.now())
    second = tokens.get_access_token(conn)
    assert second != first
    assert api_accepts(sandbox_world, second)
    client_id = sandbox_world.team_app.client_id
    assert sandbox.token_requests(client_id, "client_credentials") == 2
    stored = Connection.objects.get(pk=conn.pk)
    assert stored.refresh_token is None
    assert f"team_{sandbox_world.team_id}" in stored.scope_list
    assert stored.events.first().kind == ConnectionEvent.Kind.TOKEN_ACQUIRED  # type: ignore[union-attr]


def test_a_machine_connection_with_a_wrong_secret_needs_new_credentials(
    partner_settings: Settings, sandbox_world: SandboxWorld, team: Team
) -> None:
    conn = machine_connection(sandbox_world, team, secret="not-the-secret")
    with pytest.raises(tokens.ReconnectRequired, match="reconnect it with a working client secret"):
        tokens.get_access_token(conn)
    after = Connection.objects.get(pk=conn.pk)
    assert after.status == Connection.Status.NEEDS_RECONNECT
    assert after.last_error_code == "invalid_client"
    assert "invalid_client" not in after.last_error_message  # a sentence for people


@pytest.mark.django_db(transaction=True)
def test_a_refresh_inside_the_callers_transaction_is_refused(
    partner_settings: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
) -> None:
    conn = user_connection(sandbox_world, team, alice, expired=True)
    with (
        pytest.raises(RuntimeError, match=r"must not run inside transaction\.atomic"),
        transaction.atomic(),
    ):
        tokens.get_access_token(conn)
    assert refreshes(sandbox, sandbox_world, outcome=None) == 0


def test_a_429_waits_at_least_as_long_as_retry_after(
    partner_settings: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
) -> None:
    partner_settings.BIPSYNC_REFRESH_BACKOFF_BASE_SECONDS = 1
    conn = user_connection(sandbox_world, team, alice, expired=True)
    sandbox.set_fault(
        "rate_limit", client_id=sandbox_world.user_app.client_id, delay_ms=120_000, count=1
    )
    before = timezone.now()
    result = tokens.refresh_connection(conn.pk)
    assert result.outcome == "failed"
    assert result.code == tokens.RATE_LIMITED
    assert result.retry_at is not None
    assert result.retry_at >= before + timedelta(seconds=120)
    assert "(HTTP 429)" in result.message
    assert Connection.objects.get(pk=conn.pk).status == Connection.Status.FAILING


def test_a_service_account_connection_refreshes_with_the_service_application(
    partner_settings: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
) -> None:
    issued = sandbox_world.connect(sandbox_world.service_app)
    conn = Connection.objects.create(
        team=team,
        created_by=alice,
        tenant=sandbox_world.tenant,
        kind=Connection.Kind.SERVICE_ACCOUNT,
        scopes=" ".join(sandbox_world.service_app.scopes),
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        access_expires_at=timezone.now(),
    )
    fresh = tokens.get_access_token(conn)
    assert fresh != issued["access_token"]
    assert api_accepts(sandbox_world, fresh)
    client_id = sandbox_world.service_app.client_id
    assert sandbox.token_requests(client_id, "refresh_token") == 1


def test_a_device_connection_refreshes_as_the_public_client(
    partner_settings: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
) -> None:
    app = sandbox_world.device_app
    with httpx.Client(timeout=10) as http:
        device = http.post(
            sandbox.device_url(sandbox_world.tenant),
            data={"client_id": app.client_id, "scope": " ".join(app.scopes)},
        ).json()
        sandbox.approve_device(
            sandbox_world.tenant,
            device["user_code"],
            sandbox_world.member.email,
            sandbox_world.member.password,
        )
        issued = http.post(
            sandbox_world.token_url,
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                "device_code": device["device_code"],
                "client_id": app.client_id,
            },
        ).json()
    conn = Connection.objects.create(
        team=team,
        user=alice,
        tenant=sandbox_world.tenant,
        kind=Connection.Kind.DEVICE,
        scopes=" ".join(app.scopes),
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        access_expires_at=timezone.now(),
    )
    fresh = tokens.get_access_token(conn)
    assert fresh != issued["access_token"]
    assert api_accepts(sandbox_world, fresh)
    assert sandbox.token_requests(app.client_id, "refresh_token") == 1
