"""Scopes granted against scopes needed, and the re-consent that asks Bipsync for the missing
ones: the partner's pages (Django test client, real PostgreSQL) against the running sandbox over
real HTTP (sign-in, consent, token exchange, the REST write endpoint)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.connections.models import Connection
from bipsync_partner.writes.models import Write
from tests.conftest import signed_in
from tests.connections.connect_support import come_back, configure_partner, connect, new_world
from tests.support.sandbox import Sandbox, SandboxWorld

pytestmark = pytest.mark.django_db

READ = ["rest_api:read", "rest_api:fields:read"]


@pytest.fixture
def world(sandbox: Sandbox, settings: Settings) -> SandboxWorld:
    created = new_world(sandbox)
    configure_partner(settings, sandbox, created)  # BIPSYNC_SCOPES: the read scopes only
    settings.BIPSYNC_WRITE_SCOPES = "rest_api:write"
    return created


def the_team_writes(team: Team) -> None:
    Write.objects.create(
        team=team,
        kind=Write.Kind.NOTE,
        external_source="crm",
        external_value="call-1",
        ordering_key="crm:call-1",
        payload={"title": "Call"},
    )


def writes_a_note(world: SandboxWorld, connection: Connection) -> int:
    connection.refresh_from_db()
    response = httpx.post(
        world.api_base + "/v2/research/note",
        json={"user": world.admin.id, "title": "Scope probe"},
        headers={"Authorization": f"Bearer {connection.access_token}"},
        timeout=10,
    )
    return response.status_code


def reconsent(
    client: Client,
    sandbox: Sandbox,
    world: SandboxWorld,
    team: Team,
    connection: Connection,
    email: str,
    password: str,
) -> Any:
    response = client.post(f"/teams/{team.slug}/connections/{connection.pk}/reconsent/")
    assert response.status_code == 302, response.content.decode()[:2000]
    location = sandbox.authorize(response["Location"], email, password)
    return come_back(client, location)


def test_a_connection_of_a_team_that_writes_shows_the_write_scope_missing_and_re_consent_grants_it(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User
) -> None:
    client = signed_in(alice)
    connect(client, sandbox, team, world, as_user=world.admin, kind="service_account")
    connection = Connection.objects.get(team=team)
    assert connection.scope_list == READ
    page = client.get(f"/teams/{team.slug}/connections/{connection.pk}/").content.decode()
    assert "scopes-missing" not in page  # a team that does not write needs the read scopes only

    the_team_writes(team)
    page = client.get(f"/teams/{team.slug}/connections/{connection.pk}/").content.decode()
    assert 'id="scopes-missing"' in page
    assert "This connection lacks <code>rest_api:write</code>" in page
    assert "Re-consent at Bipsync" in page
    assert writes_a_note(world, connection) == 401  # the sandbox refuses a write without it

    back = reconsent(
        client, sandbox, world, team, connection, world.admin.email, world.admin.password
    )

    assert back.status_code == 302
    assert back["Location"] == f"/teams/{team.slug}/connections/{connection.pk}/"
    assert Connection.objects.filter(team=team).count() == 1  # the same connection, re-granted
    connection.refresh_from_db()
    assert connection.scope_list == [*READ, "rest_api:write"]
    assert connection.access_token is not None
    granted = sandbox.introspect(connection.access_token)["scope"].split()
    assert "rest_api:write" in granted
    assert writes_a_note(world, connection) in (200, 201)
    page = client.get(back["Location"]).content.decode()
    assert "scopes-missing" not in page


def test_a_member_cannot_re_consent_the_teams_service_account(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User, bob: User
) -> None:
    connect(signed_in(alice), sandbox, team, world, as_user=world.admin, kind="service_account")
    connection = Connection.objects.get(team=team)
    the_team_writes(team)
    member = signed_in(bob)

    page = member.get(f"/teams/{team.slug}/connections/{connection.pk}/").content.decode()
    assert "Re-consent at Bipsync" not in page
    assert "A team admin can re-consent it" in page
    response = member.post(f"/teams/{team.slug}/connections/{connection.pk}/reconsent/")
    assert response.status_code == 403


def test_an_outsider_gets_404_for_re_consent(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User, charlie: User
) -> None:
    connect(signed_in(alice), sandbox, team, world, as_user=world.admin, kind="service_account")
    connection = Connection.objects.get(team=team)
    response = signed_in(charlie).post(f"/teams/{team.slug}/connections/{connection.pk}/reconsent/")
    assert response.status_code == 404


def test_re_consent_that_bipsync_refuses_for_an_application_without_the_scope_says_so(
    sandbox: Sandbox, settings: Settings, team: Team, alice: User
) -> None:
    world = new_world(sandbox)
    configure_partner(settings, sandbox, world)
    # The partner's application at Bipsync without the write scope enabled.
    narrow = sandbox.create_application(
        "read-only partner app",
        redirect_uris=[sandbox.redirect_uri],
        scopes=READ,
        tenants=[world.tenant],
    )
    settings.BIPSYNC_USER_CLIENT_ID = narrow["client_id"]
    settings.BIPSYNC_USER_CLIENT_SECRET = narrow["client_secret"]
    client = signed_in(alice)
    connect(client, sandbox, team, world, as_user=world.admin)
    connection = Connection.objects.get(team=team)
    the_team_writes(team)

    response = client.post(f"/teams/{team.slug}/connections/{connection.pk}/reconsent/")
    location = sandbox.authorize(response["Location"], world.admin.email, world.admin.password)
    back = come_back(client, location)

    assert back.status_code == 400
    assert "invalid_scope" in back.content.decode()
    connection.refresh_from_db()
    assert connection.scope_list == READ  # nothing was lost
    assert connection.status == Connection.Status.ACTIVE
