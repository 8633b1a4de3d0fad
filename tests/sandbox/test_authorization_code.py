"""The authorization-code grant with PKCE over real HTTP against the running sandbox."""

from __future__ import annotations

from tests.support.sandbox import SandboxWorld, query_of


def test_it_issues_a_code_and_exchanges_it_for_bearer_tokens(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    start = world.start(world.user_app)
    location = world.sandbox.authorize(start.url, world.member.email, world.member.password)
    params = query_of(location)
    assert location.startswith(world.user_app.redirect_uri or "")
    assert params["state"] == start.state
    assert params["iss"] == world.api_base
    response = world.exchange(world.user_app, params["code"], start.verifier)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"].lower() == "bearer"
    assert body["expires_in"] == 3600
    assert body["access_token"]
    assert body["refresh_token"]
    assert "scope" not in body
