"""Token revocation (RFC 7009) at {api}/v1/oauth/revoke."""

from __future__ import annotations

from tests.support.sandbox import SandboxWorld


def _revoke(world: SandboxWorld, token: str, **extra: str) -> int:
    response = world.http.post(
        world.sandbox.revoke_url(world.tenant),
        data={"token": token, **world.user_app.auth, **extra},
    )
    return response.status_code


def test_revoking_a_refresh_token_revokes_the_whole_grant(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    tokens = world.connect()
    assert _revoke(world, tokens["refresh_token"], token_type_hint="refresh_token") == 200
    assert world.sandbox.introspect(tokens["access_token"])["active"] is False
    response = world.refresh(world.user_app, tokens["refresh_token"])
    assert response.json()["error"] == "invalid_grant"


def test_revoking_an_access_token_leaves_the_refresh_token_usable(
    sandbox_world: SandboxWorld,
) -> None:
    world = sandbox_world
    tokens = world.connect()
    assert _revoke(world, tokens["access_token"]) == 200
    assert world.sandbox.introspect(tokens["access_token"])["active"] is False
    assert world.refresh(world.user_app, tokens["refresh_token"]).status_code == 200


def test_it_answers_200_for_an_unknown_token(sandbox_world: SandboxWorld) -> None:
    assert _revoke(sandbox_world, "no-such-token") == 200


def test_it_refuses_to_revoke_another_clients_token(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    tokens = world.connect(world.service_app, user=world.admin)
    assert _revoke(world, tokens["refresh_token"]) == 400
    assert world.sandbox.introspect(tokens["access_token"])["active"] is True


def test_it_requires_client_authentication(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    tokens = world.connect()
    response = world.http.post(
        world.sandbox.revoke_url(world.tenant),
        data={
            "token": tokens["refresh_token"],
            "client_id": world.user_app.client_id,
            "client_secret": "wrong-secret-value",
        },
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert world.sandbox.introspect(tokens["access_token"])["active"] is True


def test_it_rejects_an_unsupported_token_type_hint(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    tokens = world.connect()
    response = world.http.post(
        world.sandbox.revoke_url(world.tenant),
        data={
            "token": tokens["access_token"],
            "token_type_hint": "id_token",
            **world.user_app.auth,
        },
    )
    assert response.json()["error"] == "unsupported_token_type"
