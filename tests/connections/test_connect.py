"""Connect Bipsync end to end: the partner's pages (Django test client, real Postgres) against the
running sandbox over real HTTP (sign-in, consent, token, revocation and REST endpoints)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from accounts.models import Membership, Team, User
from bipsync_partner.connections.models import Connection, ConnectionEvent
from bipsync_partner.connections.pending import PendingAuthorizationRecord
from tests.conftest import signed_in
from tests.connections.connect_support import (
    api_accepts,
    code_exchanges,
    configure_partner,
    connect,
    new_world,
    query,
    start,
)
from tests.support.sandbox import Sandbox, SandboxWorld, WorldUser

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(sandbox: Sandbox, settings: Settings) -> SandboxWorld:
    created = new_world(sandbox)
    configure_partner(settings, sandbox, created)
    return created


def events(connection: Connection) -> list[tuple[str, Any]]:
    return [
        (e.kind, e.actor_id)
        for e in ConnectionEvent.objects.filter(connection=connection).order_by("created", "id")
    ]


def test_a_member_connects_their_own_bipsync_account_end_to_end(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User
) -> None:
    client = signed_in(bob)
    response = connect(client, sandbox, team, world, as_user=world.member)

    connection = Connection.objects.get(team=team)
    assert response.status_code == 302
    assert response["Location"] == f"/teams/acme/connections/{connection.pk}/"
    assert connection.kind == Connection.Kind.USER
    assert connection.user == bob
    assert connection.status == Connection.Status.ACTIVE
    assert connection.subject_id == world.member.id
    assert connection.subject_name == "Max Member"
    assert connection.scope_list == ["rest_api:read", "rest_api:fields:read"]
    assert connection.access_expires_at is not None
    assert connection.access_token is not None
    assert api_accepts(world, connection.access_token)
    assert events(connection) == [(ConnectionEvent.Kind.CONNECTED, bob.pk)]
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert "Max Member" in page.content.decode()
    assert "Connected to Bipsync" in page.content.decode()


def test_a_team_admin_connects_the_service_account_end_to_end(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User
) -> None:
    response = connect(
        signed_in(alice), sandbox, team, world, as_user=world.admin, kind="service_account"
    )

    connection = Connection.objects.get(team=team)
    assert response.status_code == 302
    assert connection.kind == Connection.Kind.SERVICE_ACCOUNT
    assert connection.user is None
    assert connection.created_by == alice
    # The tokens act as the partner application's service account, not as the admin who clicked.
    assert len(connection.subject_id) == 24
    assert connection.subject_id != world.admin.id
    assert connection.access_token is not None
    assert api_accepts(world, connection.access_token)
    assert code_exchanges(sandbox, world.service_app.client_id) == 1
    assert code_exchanges(sandbox, world.user_app.client_id) == 0


def test_a_member_cannot_connect_the_team_service_account(
    world: SandboxWorld, team: Team, bob: User
) -> None:
    response = signed_in(bob).post(
        "/teams/acme/connections/connect/", {"tenant": world.tenant, "kind": "service_account"}
    )
    assert response.status_code == 403
    assert not PendingAuthorizationRecord.objects.exists()


def test_connect_is_refused_without_a_csrf_token(
    world: SandboxWorld, team: Team, bob: User
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(bob)
    response = client.post("/teams/acme/connections/connect/", {"tenant": world.tenant})
    assert response.status_code == 403
    assert not PendingAuthorizationRecord.objects.exists()


def test_connect_is_a_post_only(world: SandboxWorld, team: Team, bob: User) -> None:
    assert signed_in(bob).get("/teams/acme/connections/connect/").status_code == 405


@pytest.mark.parametrize("tenant", ["https://evil.example/x", "Acme Corp", "a" * 64, "-acme"])
def test_connect_refuses_a_tenant_that_is_not_a_slug(
    world: SandboxWorld, team: Team, bob: User, tenant: str
) -> None:
    response = signed_in(bob).post(
        "/teams/acme/connections/connect/", {"tenant": tenant, "kind": "user"}
    )
    assert response.status_code == 400
    assert "lowercase letters, digits or inner hyphens" in response.content.decode()
    assert not PendingAuthorizationRecord.objects.exists()


def test_connect_names_a_tenant_bipsync_does_not_know(
    world: SandboxWorld, team: Team, bob: User
) -> None:
    response = signed_in(bob).post(
        "/teams/acme/connections/connect/", {"tenant": "no-such-site", "kind": "user"}
    )
    assert response.status_code == 400
    assert "No Bipsync site called &#x27;no-such-site&#x27; answered" in response.content.decode()


def test_the_pending_authorization_is_bound_and_keeps_no_secret_in_clear(
    world: SandboxWorld, team: Team, bob: User
) -> None:
    client = signed_in(bob)
    url = start(client, team, world.tenant)
    params = query(url)
    record = PendingAuthorizationRecord.objects.get()
    assert record.user == bob
    assert record.team == team
    assert record.kind == "user"
    assert record.used_at is None
    assert params["redirect_uri"] == world.sandbox.redirect_uri
    assert params["code_challenge_method"] == "S256"
    verifier = record.pending().code_verifier
    raw = PendingAuthorizationRecord.objects.filter(pk=record.pk).values_list(
        "state_hash", "session_hash", "payload"
    )
    stored = " ".join(str(v) for v in raw.get())
    assert params["state"] not in stored
    assert verifier not in stored
    session_key = client.session.session_key
    assert session_key is not None
    assert session_key not in stored


def test_deny_at_bipsync_shows_a_friendly_message_and_stores_nothing(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User
) -> None:
    client = signed_in(bob)
    response = connect(client, sandbox, team, world, as_user=world.member, approve=False)

    assert response.status_code == 302
    assert response["Location"] == "/teams/acme/connections/"
    page = client.get(response["Location"])
    assert "You chose not to connect" in page.content.decode()
    assert not Connection.objects.exists()
    assert code_exchanges(sandbox, world.user_app.client_id) == 0


def test_reconnecting_updates_the_same_connection(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User
) -> None:
    client = signed_in(bob)
    connect(client, sandbox, team, world, as_user=world.member)
    first = Connection.objects.get()
    old_access, old_version = first.access_token, first.version

    response = connect(client, sandbox, team, world, as_user=world.member)

    again = Connection.objects.get()
    assert response["Location"] == f"/teams/acme/connections/{first.pk}/"
    assert again.pk == first.pk
    assert again.access_token != old_access
    assert again.version > old_version
    assert events(again) == [
        (ConnectionEvent.Kind.CONNECTED, bob.pk),
        (ConnectionEvent.Kind.RECONNECTED, bob.pk),
        (ConnectionEvent.Kind.REVOKED, bob.pk),
    ]
    # The replaced grant does not linger at Bipsync.
    assert old_access is not None
    assert not api_accepts(world, old_access)
    assert again.access_token is not None
    assert api_accepts(world, again.access_token)


def _second_team_admin(sandbox: Sandbox, world: SandboxWorld) -> WorldUser:
    """An admin of another team of the same Bipsync site: approving the service account there
    gives a different service account, i.e. another Bipsync subject."""
    other = sandbox.create_team(world.tenant, "Macro desk")
    created = sandbox.create_user(
        world.tenant, other["id"], f"macro@{world.tenant}.example", world.admin.password, True
    )
    return WorldUser(created["id"], created["email"], world.admin.password)


@pytest.mark.usefixtures("identity_source")
def test_a_service_account_reconnect_as_another_subject_waits_for_the_admin(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User
) -> None:
    client = signed_in(alice)
    connect(client, sandbox, team, world, as_user=world.admin, kind="service_account")
    original = Connection.objects.get()
    subject, access = original.subject_id, original.access_token

    response = connect(
        client,
        sandbox,
        team,
        world,
        as_user=_second_team_admin(sandbox, world),
        kind="service_account",
    )

    assert response.status_code == 302
    assert response["Location"].startswith("/connections/confirm/")
    unchanged = Connection.objects.get()
    assert unchanged.subject_id == subject
    assert unchanged.access_token == access
    assert [k for k, _ in events(unchanged)] == [ConnectionEvent.Kind.CONNECTED]
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert "This is a different Bipsync account" in page.content.decode()

    held = PendingAuthorizationRecord.objects.get(held_until__isnull=False)
    held_access = held.held_access_token
    assert held_access is not None
    assert held_access not in page.content.decode()
    cancelled = client.post(response["Location"], {"decision": "cancel"})

    assert cancelled.status_code == 302
    assert Connection.objects.get().subject_id == subject
    # The held authorization was revoked at Bipsync, not left behind.
    assert not api_accepts(world, held_access)
    assert api_accepts(world, access)
    assert client.post(response["Location"], {"decision": "confirm"}).status_code == 404


@pytest.mark.usefixtures("identity_source")
def test_a_service_account_reconnect_as_another_subject_applies_once_confirmed(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User
) -> None:
    client = signed_in(alice)
    connect(client, sandbox, team, world, as_user=world.admin, kind="service_account")
    original = Connection.objects.get()
    response = connect(
        client,
        sandbox,
        team,
        world,
        as_user=_second_team_admin(sandbox, world),
        kind="service_account",
    )

    confirmed = client.post(response["Location"], {"decision": "confirm"})

    changed = Connection.objects.get()
    assert confirmed["Location"] == f"/teams/acme/connections/{original.pk}/"
    assert changed.pk == original.pk
    assert changed.subject_id != original.subject_id
    assert changed.access_token is not None
    assert api_accepts(world, changed.access_token)
    last = ConnectionEvent.objects.filter(
        connection=changed, kind=ConnectionEvent.Kind.RECONNECTED
    ).first()
    assert last is not None
    assert last.kind == ConnectionEvent.Kind.RECONNECTED
    assert last.actor == alice
    assert "confirmed the change of Bipsync subject" in last.message
    # A second confirmation (double click) changes nothing.
    assert client.post(response["Location"], {"decision": "confirm"}).status_code == 404


def test_another_member_cannot_confirm_a_held_reconnect(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User, bob: User
) -> None:
    client = signed_in(alice)
    connect(client, sandbox, team, world, as_user=world.admin, kind="service_account")
    response = connect(
        client,
        sandbox,
        team,
        world,
        as_user=_second_team_admin(sandbox, world),
        kind="service_account",
    )
    bob.memberships.update(role=Membership.Role.ADMIN)

    assert signed_in(bob).post(response["Location"], {"decision": "confirm"}).status_code == 404
    assert signed_in(alice).get(response["Location"]).status_code == 404  # another session


def test_disconnect_revokes_at_bipsync_and_keeps_the_history(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User
) -> None:
    client = signed_in(alice)
    connect(client, sandbox, team, world, as_user=world.admin, kind="service_account")
    connection = Connection.objects.get()
    access, refresh = connection.access_token, connection.refresh_token
    assert access is not None
    assert refresh is not None

    response = client.post(f"/teams/acme/connections/{connection.pk}/disconnect/")

    assert response.status_code == 302
    after = Connection.objects.get()
    assert after.status == Connection.Status.DISCONNECTED
    assert after.access_token is None
    assert after.refresh_token is None
    assert events(after) == [
        (ConnectionEvent.Kind.CONNECTED, alice.pk),
        (ConnectionEvent.Kind.DISCONNECTED, alice.pk),
        (ConnectionEvent.Kind.REVOKED, alice.pk),
    ]
    assert not api_accepts(world, access)
    refused = world.refresh(world.service_app, refresh)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    page = client.get(f"/teams/acme/connections/{connection.pk}/").content.decode()
    assert "Revoked at Bipsync" in page
    assert "Disconnected" in page


def test_connecting_again_after_a_disconnect_continues_the_same_history(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User
) -> None:
    client = signed_in(alice)
    connect(client, sandbox, team, world, as_user=world.admin)
    connection = Connection.objects.get()
    client.post(f"/teams/acme/connections/{connection.pk}/disconnect/")

    connect(client, sandbox, team, world, as_user=world.admin)

    again = Connection.objects.get()
    assert again.status == Connection.Status.ACTIVE
    assert [k for k, _ in events(again)][-1] == ConnectionEvent.Kind.RECONNECTED


def test_a_member_cannot_disconnect_the_team_service_account(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User, bob: User
) -> None:
    connect(signed_in(alice), sandbox, team, world, as_user=world.admin, kind="service_account")
    connection = Connection.objects.get()

    response = signed_in(bob).post(f"/teams/acme/connections/{connection.pk}/disconnect/")

    assert response.status_code == 403
    assert Connection.objects.get().status == Connection.Status.ACTIVE


def test_a_member_may_disconnect_their_own_connection(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User
) -> None:
    client = signed_in(bob)
    connect(client, sandbox, team, world, as_user=world.member)
    connection = Connection.objects.get()
    assert client.post(f"/teams/acme/connections/{connection.pk}/disconnect/").status_code == 302
    assert Connection.objects.get().status == Connection.Status.DISCONNECTED


def test_a_machine_connection_is_saved_once_bipsync_accepts_its_credentials(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User
) -> None:
    response = signed_in(alice).post(
        "/teams/acme/connections/machine/",
        {
            "tenant": world.tenant,
            "client_id": world.team_app.client_id,
            "client_secret": world.team_app.client_secret,
            "bipsync_team_id": world.team_id,
            "scopes": "rest_api:read",
        },
    )

    connection = Connection.objects.get()
    assert response.status_code == 302
    assert connection.kind == Connection.Kind.CLIENT_CREDENTIALS
    assert connection.user is None
    assert connection.client_id == world.team_app.client_id
    assert connection.client_secret == world.team_app.client_secret
    assert connection.bipsync_team_id == world.team_id
    assert connection.subject_id == world.team_id
    assert f"team_{world.team_id}" in connection.scope_list
    assert connection.access_token is not None
    assert api_accepts(world, connection.access_token)
    assert sandbox.token_requests(world.team_app.client_id, "client_credentials") == 1


def test_a_machine_connection_with_bad_credentials_shows_the_oauth_error_and_is_not_saved(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User
) -> None:
    response = signed_in(alice).post(
        "/teams/acme/connections/machine/",
        {
            "tenant": world.tenant,
            "client_id": world.team_app.client_id,
            "client_secret": "not-the-secret",
            "bipsync_team_id": world.team_id,
            "scopes": "rest_api:read",
        },
    )

    assert response.status_code == 400
    page = response.content.decode()
    assert "Bipsync does not accept these credentials: check the client id and secret." in page
    assert "invalid_client" not in page  # a sentence for people, not an OAuth error code
    assert "not-the-secret" not in page
    assert not Connection.objects.exists()


def test_a_machine_connection_needs_a_24_hex_team_id(
    world: SandboxWorld, team: Team, alice: User
) -> None:
    response = signed_in(alice).post(
        "/teams/acme/connections/machine/",
        {
            "tenant": world.tenant,
            "client_id": "x",
            "client_secret": "y",
            "bipsync_team_id": "not-a-team",
            "scopes": "rest_api:read",
        },
    )
    assert response.status_code == 400
    assert "24 hexadecimal characters" in response.content.decode()


def test_a_member_cannot_add_a_machine_connection(team: Team, bob: User) -> None:
    assert signed_in(bob).get("/teams/acme/connections/machine/").status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        "/teams/acme/connections/",
        "/teams/acme/connections/machine/",
        "/teams/acme/connections/00000000-0000-0000-0000-000000000000/",
    ],
)
def test_an_outsider_gets_404_for_every_connection_page(
    team: Team, alice: User, charlie: User, path: str
) -> None:
    assert signed_in(charlie).get(path).status_code == 404


def test_an_outsider_cannot_see_or_disconnect_a_team_connection(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User, charlie: User
) -> None:
    connect(signed_in(alice), sandbox, team, world, as_user=world.admin, kind="service_account")
    connection = Connection.objects.get()
    outsider = signed_in(charlie)
    assert outsider.get(f"/teams/acme/connections/{connection.pk}/").status_code == 404
    assert outsider.post(f"/teams/acme/connections/{connection.pk}/disconnect/").status_code == 404
    assert outsider.get(f"/teams/globex/connections/{connection.pk}/").status_code == 404
    assert Connection.objects.get().status == Connection.Status.ACTIVE


def test_members_see_their_own_and_the_team_connections_but_not_other_members(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User, bob: User
) -> None:
    admin = signed_in(alice)
    connect(admin, sandbox, team, world, as_user=world.admin)  # alice's own
    connect(admin, sandbox, team, world, as_user=world.admin, kind="service_account")
    alices = Connection.objects.get(kind=Connection.Kind.USER)
    service = Connection.objects.get(kind=Connection.Kind.SERVICE_ACCOUNT)

    member = signed_in(bob)
    listing = member.get("/teams/acme/connections/").content.decode()

    assert str(service.pk) in listing
    assert str(alices.pk) not in listing
    assert member.get(f"/teams/acme/connections/{alices.pk}/").status_code == 404
    service_page = member.get(f"/teams/acme/connections/{service.pk}/").content.decode()
    assert "Active" in service_page
    assert "Disconnect" not in service_page
    everything = admin.get("/teams/acme/connections/").content.decode()
    assert str(alices.pk) in everything
    assert str(service.pk) in everything
