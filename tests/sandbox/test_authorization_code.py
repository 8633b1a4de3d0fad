"""The authorization-code grant (with PKCE) over real HTTP against the running sandbox."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.support.sandbox import (
    Sandbox,
    SandboxError,
    SandboxWorld,
    authorization_url,
    pkce_pair,
    query_of,
)


def _code(world: SandboxWorld, url: str) -> str:
    params = query_of(world.sandbox.authorize(url, world.member.email, world.member.password))
    return params["code"]


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
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["access_token"]
    assert body["refresh_token"]
    assert "scope" not in body


def test_its_tokens_act_as_the_consenting_user(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    tokens = world.connect(user=world.member, scope="rest_api:read")
    info = world.sandbox.introspect(tokens["access_token"])
    assert info["active"] is True
    assert info["kind"] == "user"
    assert info["user_id"] == world.member.id
    assert info["service_account_id"] is None
    assert info["scope"] == "rest_api:read"


def test_it_accepts_client_authentication_by_http_basic(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    app = world.user_app
    start = world.start(app)
    code = _code(world, start.url)
    basic = base64.b64encode(f"{app.client_id}:{app.client_secret}".encode()).decode()
    response = world.http.post(
        world.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": app.redirect_uri,
            "code_verifier": start.verifier,
        },
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 200, response.text


def test_it_accepts_a_json_body(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    app = world.user_app
    start = world.start(app)
    code = _code(world, start.url)
    response = world.http.post(
        world.token_url,
        json={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": app.redirect_uri,
            "code_verifier": start.verifier,
            **app.auth,
        },
    )
    assert response.status_code == 200, response.text


def test_it_lets_a_public_client_exchange_a_code_without_a_secret(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    native = sandbox.partner_url + "/callback"  # a loopback redirect (RFC 8252, section 7.3)
    created = sandbox.create_application(
        "Native app",
        confidential=False,
        redirect_uris=[native],
        tenants=[world.tenant],
    )
    assert created["client_secret"] is None
    verifier, challenge = pkce_pair()
    url = authorization_url(
        world.web_base,
        created["client_id"],
        native,
        state="s1",
        code_challenge=challenge,
    )
    code = _code(world, url)
    response = world.http.post(
        world.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": native,
            "code_verifier": verifier,
            "client_id": created["client_id"],
        },
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("pkce", "expected"),
    [
        ({}, "PKCE is required"),
        ({"code_challenge": "x" * 43, "code_challenge_method": "plain"}, "must be S256"),
        ({"code_challenge": "x" * 43}, "must be S256"),
    ],
)
def test_it_refuses_an_authorization_request_without_s256_pkce(
    sandbox_world: SandboxWorld, pkce: dict[str, str], expected: str
) -> None:
    world = sandbox_world
    app = world.user_app
    url = authorization_url(
        world.web_base, app.client_id, app.redirect_uri or "", state="st", extra=pkce
    )
    params = query_of(world.sandbox.authorize(url, world.member.email, world.member.password))
    assert params["error"] == "invalid_request"
    assert expected in params["error_description"]
    assert params["state"] == "st"
    assert params["iss"] == world.api_base


def test_it_requires_state(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    app = world.user_app
    _, challenge = pkce_pair()
    url = authorization_url(
        world.web_base, app.client_id, app.redirect_uri or "", code_challenge=challenge
    )
    params = query_of(world.sandbox.authorize(url, world.member.email, world.member.password))
    assert params["error"] == "invalid_request"
    assert "state" in params["error_description"]
    assert params["iss"] == world.api_base


def test_it_shows_an_error_page_for_an_unknown_client(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    _, challenge = pkce_pair()
    url = authorization_url(
        world.web_base,
        "nobody",
        world.user_app.redirect_uri or "",
        state="s",
        code_challenge=challenge,
    )
    response = httpx.get(url)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "cannot sign in with Bipsync" in response.text


def test_it_shows_an_error_page_for_an_unregistered_redirect_uri(
    sandbox_world: SandboxWorld,
) -> None:
    world = sandbox_world
    _, challenge = pkce_pair()
    for redirect_uri in ["https://evil.example/cb", (world.user_app.redirect_uri or "") + "/extra"]:
        url = authorization_url(
            world.web_base,
            world.user_app.client_id,
            redirect_uri,
            state="s",
            code_challenge=challenge,
        )
        response = httpx.get(url)
        assert response.status_code == 400
        assert "location" not in response.headers


def test_it_shows_an_error_page_when_the_redirect_uri_is_missing(
    sandbox_world: SandboxWorld,
) -> None:
    world = sandbox_world
    _, challenge = pkce_pair()
    url = (
        f"{world.web_base}/oauth/authorize?response_type=code&client_id="
        f"{world.user_app.client_id}&state=s&code_challenge={challenge}&code_challenge_method=S256"
    )
    response = httpx.get(url)
    assert response.status_code == 400
    assert "location" not in response.headers


def test_it_treats_an_application_not_enabled_for_the_tenant_as_unknown(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    sandbox.disable_application(world.user_app.client_id, world.tenant)
    start = world.start(world.user_app)
    response = httpx.get(start.url)
    assert response.status_code == 400
    assert "location" not in response.headers


def test_it_redirects_with_access_denied_when_the_user_denies(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    start = world.start(world.user_app)
    location = world.sandbox.authorize(
        start.url, world.member.email, world.member.password, approve=False
    )
    params = query_of(location)
    assert location.startswith(world.user_app.redirect_uri or "")
    assert params["error"] == "access_denied"
    assert params["state"] == start.state
    assert params["iss"] == world.api_base
    assert "code" not in params


@pytest.mark.parametrize("scope", ["rest_api:read nonsense:read", "tasks:read"])
def test_it_redirects_with_invalid_scope_for_scopes_the_app_may_not_have(
    sandbox_world: SandboxWorld, scope: str
) -> None:
    world = sandbox_world
    start = world.start(world.user_app, scope=scope)
    params = query_of(world.sandbox.authorize(start.url, world.member.email, world.member.password))
    assert params["error"] == "invalid_scope"
    assert params["state"] == start.state


def test_it_refuses_a_wrong_password_at_sign_in(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    start = world.start(world.user_app)
    with pytest.raises(SandboxError, match="Sign-in refused"):
        world.sandbox.authorize(start.url, world.member.email, "wrong password")


def test_it_refuses_a_reused_code_and_revokes_the_tokens_issued_from_it(
    sandbox_world: SandboxWorld,
) -> None:
    world = sandbox_world
    start = world.start(world.user_app)
    code = _code(world, start.url)
    first = world.exchange(world.user_app, code, start.verifier)
    assert first.status_code == 200
    tokens = first.json()
    second = world.exchange(world.user_app, code, start.verifier)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    assert world.sandbox.introspect(tokens["access_token"])["active"] is False
    refreshed = world.refresh(world.user_app, tokens["refresh_token"])
    assert refreshed.status_code == 400
    assert refreshed.json()["error"] == "invalid_grant"


def test_it_refuses_an_expired_code(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    start = world.start(world.user_app)
    code = _code(world, start.url)
    world.sandbox.expire_codes(world.user_app.client_id)
    response = world.exchange(world.user_app, code, start.verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert "expired" in response.json()["error_description"]


def test_it_refuses_a_wrong_code_verifier(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    start = world.start(world.user_app)
    code = _code(world, start.url)
    other_verifier, _ = pkce_pair()
    response = world.exchange(world.user_app, code, other_verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("length", [42, 129])
def test_it_refuses_a_code_verifier_outside_43_to_128_characters(
    sandbox_world: SandboxWorld, length: int
) -> None:
    world = sandbox_world
    start = world.start(world.user_app)
    code = _code(world, start.url)
    response = world.exchange(world.user_app, code, "a" * length)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_it_refuses_a_redirect_uri_that_differs_from_the_authorization_request(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    start = world.start(world.user_app)
    code = _code(world, start.url)
    response = world.http.post(
        world.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": sandbox.partner_url + "/other",
            "code_verifier": start.verifier,
            **world.user_app.auth,
        },
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_it_answers_a_wrong_client_secret_with_401_invalid_client(
    sandbox_world: SandboxWorld,
) -> None:
    world = sandbox_world
    app = world.user_app
    for kwargs in [
        {
            "data": {
                "grant_type": "authorization_code",
                "code": "x",
                "client_id": app.client_id,
                "client_secret": "wrong-secret",
            }
        },
        {
            "data": {"grant_type": "authorization_code", "code": "x"},
            "auth": (app.client_id, "wrong-secret"),
        },
        {
            "data": {
                "grant_type": "authorization_code",
                "code": "x",
                "client_id": "nobody",
                "client_secret": "s" * 20,
            }
        },
        {"data": {"grant_type": "authorization_code", "code": "x", "client_id": app.client_id}},
    ]:
        response = world.http.post(world.token_url, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 401, kwargs
        body = response.json()
        assert body["error"] == "invalid_client"
        assert body["error_description"]
        assert body["hint"]
        assert response.headers["www-authenticate"].startswith("Basic")


def test_its_error_bodies_carry_error_description_and_hint(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    response = world.http.post(
        world.token_url, data={"grant_type": "password", **world.user_app.auth}
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "unsupported_grant_type"
    assert body["error_description"]
    assert body["hint"]


def test_it_refuses_a_grant_the_application_may_not_use(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    response = world.http.post(
        world.token_url,
        data={
            "grant_type": "client_credentials",
            "scope": f"team_{world.team_id}",
            **world.user_app.auth,
        },
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"


def test_it_answers_a_malformed_json_body_with_invalid_request(
    sandbox_world: SandboxWorld,
) -> None:
    world = sandbox_world
    response = world.http.post(
        world.token_url, content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_it_answers_get_on_the_token_endpoint_with_405(sandbox_world: SandboxWorld) -> None:
    response = sandbox_world.http.get(sandbox_world.token_url)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
