"""Who may call the REST API: bearer tokens, scopes, IP allow-lists and the per-token rate limit.

Every 401 must carry an RFC 6750 §3 ``WWW-Authenticate: Bearer`` challenge; a missing scope is a
401 with ``error="insufficient_scope"`` (Bipsync documents 401, platform reference "Errors"); 403
means the caller's IP address is not allow-listed; 429 comes with ``Retry-After``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest

from tests.sandbox.research_api import FIELDS, READ, WRITE, Api, team_token, user_token
from tests.support.sandbox import Sandbox, SandboxWorld, make_world


def _challenge(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    challenge: str = response.headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Bearer "), challenge
    assert 'realm="http://127.0.0.1:' in challenge
    return challenge


def test_it_challenges_a_request_without_a_token(sandbox_world: SandboxWorld) -> None:
    response = Api(sandbox_world, None).get("/v1/research")
    challenge = _challenge(response)
    # RFC 6750 §3.1: no error code when the request carried no credentials.
    assert "error=" not in challenge
    assert response.json()["error"] == "unauthorized"


def test_it_challenges_other_authorization_schemes(sandbox_world: SandboxWorld) -> None:
    api = Api(sandbox_world, None)
    response = api.get("/v1/research", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert "error=" not in _challenge(response)


def test_it_answers_400_to_a_malformed_bearer_header(sandbox_world: SandboxWorld) -> None:
    api = Api(sandbox_world, None)
    for header in ("Bearer", 'Bearer "quoted"', "Bearer a b", "Bearer tok%en"):
        response = api.get("/v1/research", headers={"Authorization": header})
        assert response.status_code == 400, header
        assert 'error="invalid_request"' in response.headers["WWW-Authenticate"]


def test_it_rejects_an_unknown_token(sandbox_world: SandboxWorld) -> None:
    response = Api(sandbox_world, secrets.token_urlsafe(32)).get("/v1/research")
    assert 'error="invalid_token"' in _challenge(response)
    assert response.json()["error"] == "invalid_token"


def test_it_rejects_an_altered_token(sandbox_world: SandboxWorld) -> None:
    token = team_token(sandbox_world)
    api = Api(sandbox_world, token + "x")
    assert 'error="invalid_token"' in _challenge(api.get("/v1/research"))


def test_it_rejects_an_expired_token(sandbox: Sandbox, sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    api = Api(world, user_token(world))
    assert api.get("/v1/research").status_code == 200
    sandbox.expire_tokens(world.user_app.client_id)
    response = api.get("/v1/research")
    assert 'error="invalid_token"' in _challenge(response)
    assert "expired" in response.json()["error_description"]


def test_it_rejects_a_revoked_token(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    tokens = world.connect(world.user_app)
    api = Api(world, tokens["access_token"])
    assert api.get("/v1/research").status_code == 200
    revoked = world.http.post(
        world.api_base + "/v1/oauth/revoke",
        data={"token": tokens["access_token"], **world.user_app.auth},
    )
    assert revoked.status_code == 200
    response = api.get("/v1/research")
    assert 'error="invalid_token"' in _challenge(response)
    assert "revoked" in response.json()["error_description"]


def test_it_rejects_a_token_issued_by_another_tenant(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    other = make_world(sandbox)
    try:
        token = team_token(other)
        response = Api(sandbox_world, token).get("/v1/research")
        assert 'error="invalid_token"' in _challenge(response)
        assert Api(other, token).get("/v1/research").status_code == 200
    finally:
        other.http.close()


# --- scopes ------------------------------------------------------------------------------------


def test_reading_research_needs_rest_api_read(sandbox_world: SandboxWorld) -> None:
    api = Api(sandbox_world, user_token(sandbox_world, scope=FIELDS))
    response = api.get("/v1/research")
    challenge = _challenge(response)
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="rest_api:read"' in challenge
    assert response.json()["error"] == "insufficient_scope"
    assert api.get("/v1/contenttype").status_code == 401
    assert api.get("/v1/field").status_code == 200


def test_listing_fields_needs_rest_api_fields_read(sandbox_world: SandboxWorld) -> None:
    api = Api(sandbox_world, user_token(sandbox_world, scope=READ))
    challenge = _challenge(api.get("/v1/field"))
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="rest_api:fields:read"' in challenge
    assert api.get("/v1/research").status_code == 200


def test_creating_a_note_needs_rest_api_write(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    reader = Api(world, user_token(world, scope=READ))
    challenge = _challenge(reader.post("/v2/research/note", {"user": world.admin.id}))
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="rest_api:write"' in challenge
    writer = Api(world, user_token(world, scope=WRITE))
    assert writer.post("/v2/research/note", {"user": world.admin.id}).status_code == 201
    assert 'scope="rest_api:read"' in _challenge(writer.get("/v1/research"))


def test_a_token_with_only_the_team_scope_reaches_nothing(sandbox_world: SandboxWorld) -> None:
    api = Api(sandbox_world, team_token(sandbox_world, scope=""))
    for path in ("/v1/research", "/v1/contenttype", "/v1/field"):
        assert 'error="insufficient_scope"' in _challenge(api.get(path))


# --- IP allow-list -----------------------------------------------------------------------------


def test_it_answers_403_to_an_address_outside_the_tenant_allow_list(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    api = Api(world, team_token(world))
    sandbox.set_allowlist(world.tenant, ["10.0.0.0/8", "192.168.0.0/16"])
    response = api.get("/v1/research")
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "ip_not_allowed"
    assert "127.0.0.1" in body["error_description"]
    assert "allow-listed" in body["error_description"]
    assert api.post("/v2/research/note", {"user": world.admin.id}).status_code == 403

    sandbox.set_allowlist(world.tenant, ["127.0.0.0/8"])
    assert api.get("/v1/research").status_code == 200
    sandbox.set_allowlist(world.tenant, [])
    assert api.get("/v1/research").status_code == 200


# --- rate limit --------------------------------------------------------------------------------


@pytest.fixture
def strict_rate_limit(sandbox: Sandbox) -> Iterator[None]:
    # A window longer than the test, so that the count cannot roll over while it runs.
    sandbox.set_api_rate_limit(3, window=60)
    try:
        yield
    finally:
        sandbox.reset_api_settings()


@pytest.mark.usefixtures("strict_rate_limit")
def test_it_answers_429_with_retry_after_over_the_per_token_limit(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    api = Api(world, team_token(world))
    assert [api.get("/v1/research").status_code for _ in range(3)] == [200, 200, 200]
    limited = api.get("/v1/research")
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.json()["error"] == "rate_limited"
    client_id = world.team_app.client_id
    assert sandbox.api_requests(client_id, outcome="rate_limited") == 1
    # The limit is per token: another token of the same client is not affected.
    assert Api(world, team_token(world)).get("/v1/research").status_code == 200


def test_the_rate_limit_is_shared_by_all_server_workers(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    """Each new connection may land on either gunicorn worker; the count must still add up."""
    world = sandbox_world
    token = team_token(world)
    sandbox.set_api_rate_limit(10, window=60)
    try:
        statuses = []
        for _ in range(14):
            with httpx.Client(timeout=30.0) as fresh:
                response = fresh.get(
                    world.api_base + "/v1/research", headers={"Authorization": f"Bearer {token}"}
                )
                statuses.append(response.status_code)
        assert statuses == [200] * 10 + [429] * 4
    finally:
        sandbox.reset_api_settings()
