"""The client-credentials grant: team tokens for a customer's own jobs [doc]."""

from __future__ import annotations

import pytest

from tests.support.sandbox import Sandbox, SandboxError, SandboxWorld


def test_it_issues_a_team_token_without_a_refresh_token(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    response = world.http.post(
        world.token_url,
        data={
            "grant_type": "client_credentials",
            "scope": f"rest_api:read team_{world.team_id}",
        },
        auth=(world.team_app.client_id, world.team_app.client_secret or ""),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert "refresh_token" not in body
    info = world.sandbox.introspect(body["access_token"])
    assert info["kind"] == "team"
    assert info["team_id"] == world.team_id
    assert info["user_id"] is None


@pytest.mark.parametrize(
    "scope",
    [
        "rest_api:read",
        "rest_api:read team_0123",
        "rest_api:read team_{other}",
        "rest_api:fields:read team_{team}",
        "team_{team} team_{other}",
    ],
)
def test_it_requires_exactly_one_team_scope_of_its_own_team(
    sandbox: Sandbox, sandbox_world: SandboxWorld, scope: str
) -> None:
    world = sandbox_world
    other = sandbox.create_team(world.tenant, "Other team")["id"]
    response = world.http.post(
        world.token_url,
        data={
            "grant_type": "client_credentials",
            "scope": scope.format(team=world.team_id, other=other),
            **world.team_app.auth,
        },
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_it_refuses_a_team_of_another_tenant(sandbox: Sandbox, sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    other_tenant = world.tenant + "x"
    sandbox.create_tenant(other_tenant)
    foreign_team = sandbox.create_team(other_tenant, "Foreign")["id"]
    unowned = sandbox.create_application(
        "Unowned machine app",
        grant_types=["client_credentials"],
        tenants=[world.tenant],
    )
    response = world.http.post(
        world.token_url,
        data={
            "grant_type": "client_credentials",
            "scope": f"team_{foreign_team}",
            "client_id": unowned["client_id"],
            "client_secret": unowned["client_secret"],
        },
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
    own = world.http.post(
        world.token_url,
        data={
            "grant_type": "client_credentials",
            "scope": f"team_{world.team_id}",
            "client_id": unowned["client_id"],
            "client_secret": unowned["client_secret"],
        },
    )
    assert own.status_code == 200


def test_it_requires_the_client_secret(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    response = world.http.post(
        world.token_url,
        data={
            "grant_type": "client_credentials",
            "scope": f"team_{world.team_id}",
            "client_id": world.team_app.client_id,
        },
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_it_does_not_register_a_public_client_credentials_app(sandbox: Sandbox) -> None:
    with pytest.raises(SandboxError, match="public application cannot use client_credentials"):
        sandbox.create_application(
            "Public machine", confidential=False, grant_types=["client_credentials"]
        )
