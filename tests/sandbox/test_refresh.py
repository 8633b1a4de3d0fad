"""The refresh-token grant: rotation, reuse, scope narrowing [doc]."""

from __future__ import annotations

from tests.support.sandbox import SandboxWorld


def test_it_rotates_the_pair_and_revokes_the_old_one(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    old = world.connect()
    response = world.refresh(world.user_app, old["refresh_token"])
    assert response.status_code == 200, response.text
    new = response.json()
    assert new["token_type"] == "bearer"
    assert new["expires_in"] == 3600
    assert new["access_token"] != old["access_token"]
    assert new["refresh_token"] != old["refresh_token"]
    assert world.sandbox.introspect(old["access_token"])["active"] is False
    assert world.sandbox.introspect(old["refresh_token"])["active"] is False
    assert world.sandbox.introspect(new["access_token"])["active"] is True


def test_it_refuses_a_rotated_refresh_token_and_revokes_its_successors(
    sandbox_world: SandboxWorld,
) -> None:
    world = sandbox_world
    old = world.connect()
    new = world.refresh(world.user_app, old["refresh_token"]).json()
    reused = world.refresh(world.user_app, old["refresh_token"])
    assert reused.status_code == 400
    body = reused.json()
    assert body["error"] == "invalid_grant"
    assert body["error_description"]
    assert body["hint"]
    # RFC 9700 §4.14.2: reuse means a leak; the successors are revoked too.
    assert world.sandbox.introspect(new["access_token"])["active"] is False
    assert world.refresh(world.user_app, new["refresh_token"]).status_code == 400


def test_it_counts_exactly_the_refreshes_made(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    tokens = world.connect()
    for _ in range(3):
        tokens = world.refresh(world.user_app, tokens["refresh_token"]).json()
    world.refresh(world.user_app, "not-a-refresh-token")
    assert world.sandbox.token_requests(world.user_app.client_id, "refresh_token") == 3
    assert world.sandbox.token_requests(world.user_app.client_id, "refresh_token", None) == 4
    assert world.sandbox.token_requests(world.user_app.client_id, "authorization_code") == 1


def test_it_narrows_the_access_token_scope_but_keeps_the_granted_scope(
    sandbox_world: SandboxWorld,
) -> None:
    world = sandbox_world
    tokens = world.connect(scope="rest_api:read rest_api:write")
    narrowed = world.refresh(world.user_app, tokens["refresh_token"], scope="rest_api:read")
    assert narrowed.status_code == 200
    info = world.sandbox.introspect(narrowed.json()["access_token"])
    assert info["scope"] == "rest_api:read"
    assert info["granted_scope"] == "rest_api:read rest_api:write"
    # RFC 6749 §6: the new refresh token keeps the originally granted scope.
    wide_again = world.refresh(
        world.user_app, narrowed.json()["refresh_token"], scope="rest_api:read rest_api:write"
    )
    assert wide_again.status_code == 200


def test_it_refuses_a_wider_scope_on_refresh(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    tokens = world.connect(scope="rest_api:read")
    response = world.refresh(
        world.user_app, tokens["refresh_token"], scope="rest_api:read rest_api:write"
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
    # The refused request did not consume the refresh token.
    assert world.refresh(world.user_app, tokens["refresh_token"]).status_code == 200


def test_it_refuses_another_clients_refresh_token(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    tokens = world.connect(world.user_app)
    response = world.refresh(world.service_app, tokens["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert world.refresh(world.user_app, tokens["refresh_token"]).status_code == 200


def test_it_refuses_an_expired_refresh_token(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    tokens = world.connect()
    world.sandbox.expire_tokens(world.user_app.client_id, access=True, refresh=True)
    assert world.sandbox.introspect(tokens["access_token"])["active"] is False
    response = world.refresh(world.user_app, tokens["refresh_token"])
    assert response.status_code == 400
    assert "expired" in response.json()["error_description"]


def test_it_refreshes_with_a_json_body_and_with_http_basic(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    app = world.user_app
    tokens = world.connect()
    as_json = world.http.post(
        world.token_url,
        json={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], **app.auth},
    )
    assert as_json.status_code == 200, as_json.text
    as_basic = world.http.post(
        world.token_url,
        data={"grant_type": "refresh_token", "refresh_token": as_json.json()["refresh_token"]},
        auth=(app.client_id, app.client_secret or ""),
    )
    assert as_basic.status_code == 200, as_basic.text


def test_it_refuses_refresh_once_the_customer_disables_the_application(
    sandbox_world: SandboxWorld,
) -> None:
    world = sandbox_world
    tokens = world.connect()
    world.sandbox.disable_application(world.user_app.client_id, world.tenant)
    response = world.refresh(world.user_app, tokens["refresh_token"])
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_it_refuses_refresh_after_an_admin_revokes_the_tokens(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    tokens = world.connect()
    world.sandbox.revoke_tokens(world.user_app.client_id)
    response = world.refresh(world.user_app, tokens["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
