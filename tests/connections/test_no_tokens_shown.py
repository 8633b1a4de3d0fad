"""No page shows a token or a secret: the team's pages, every connection page, the confirmation
page of a held reconnect, and the back office."""

from __future__ import annotations

import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.connections.models import Connection, ConnectionEvent
from bipsync_partner.connections.pending import PendingAuthorizationRecord
from tests.conftest import signed_in
from tests.connections.connect_support import configure_partner, connect, new_world
from tests.support.sandbox import Sandbox, SandboxWorld, WorldUser

pytestmark = pytest.mark.django_db


def test_no_page_or_admin_page_ever_shows_a_token_or_secret(
    sandbox: Sandbox, settings: Settings, team: Team, alice: User, bob: User
) -> None:
    world: SandboxWorld = new_world(sandbox)
    configure_partner(settings, sandbox, world)
    admin = signed_in(alice)
    member = signed_in(bob)
    connect(admin, sandbox, team, world, as_user=world.admin, kind="service_account")
    connect(member, sandbox, team, world, as_user=world.member)
    admin.post(
        "/teams/acme/connections/machine/",
        {
            "tenant": world.tenant,
            "client_id": world.team_app.client_id,
            "client_secret": world.team_app.client_secret,
            "bipsync_team_id": world.team_id,
            "scopes": "rest_api:read",
        },
    )
    # A service-account reconnect as another subject, held for confirmation.
    other = sandbox.create_team(world.tenant, "Macro desk")
    macro = sandbox.create_user(
        world.tenant, other["id"], f"macro@{world.tenant}.example", world.admin.password, True
    )
    held = connect(
        admin,
        sandbox,
        team,
        world,
        as_user=WorldUser(macro["id"], macro["email"], world.admin.password),
        kind="service_account",
    )
    connections = list(Connection.objects.all())
    assert len(connections) == 3
    secrets: list[str] = [world.team_app.client_secret or ""]
    for connection in connections:
        secrets += [connection.access_token or "", connection.refresh_token or ""]
    record = PendingAuthorizationRecord.objects.get(held_until__isnull=False)
    secrets += [record.held_access_token or "", record.held_refresh_token or ""]
    secrets += [record.pending().code_verifier, record.pending().state]
    secrets = [s for s in secrets if s]
    assert len(secrets) >= 9

    staff = User.objects.create_superuser("ops@example.com", "pw-ops-123456")
    back_office = Client()
    back_office.force_login(staff)
    pages: list[tuple[Client, str]] = [
        (admin, "/teams/acme/"),
        (admin, "/teams/acme/connections/"),
        (member, "/teams/acme/connections/"),
        (admin, held["Location"]),
        (back_office, "/admin/connections/connection/"),
        (back_office, "/admin/connections/connectionevent/"),
    ]
    for connection in connections:
        pages.append((admin, f"/teams/acme/connections/{connection.pk}/"))
        pages.append((back_office, f"/admin/connections/connection/{connection.pk}/change/"))
    for event in ConnectionEvent.objects.all():
        pages.append((back_office, f"/admin/connections/connectionevent/{event.pk}/change/"))

    for client, path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        body = response.content.decode()
        for secret in secrets:
            assert secret not in body, f"a secret appears on {path}"
