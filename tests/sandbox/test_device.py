"""The device authorization grant (RFC 8628) as Bipsync documents it."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.support.sandbox import Sandbox, SandboxError, SandboxWorld

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def _authorize_device(world: SandboxWorld, scope: str = "rest_api:read") -> dict[str, Any]:
    response = world.http.post(
        world.sandbox.device_url(world.tenant),
        data={"client_id": world.device_app.client_id, "scope": scope},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _poll(world: SandboxWorld, device_code: str) -> httpx.Response:
    return world.http.post(
        world.token_url,
        data={
            "grant_type": DEVICE_GRANT,
            "device_code": device_code,
            "client_id": world.device_app.client_id,
        },
    )


def test_it_answers_the_device_authorization_request_as_documented(
    sandbox_world: SandboxWorld,
) -> None:
    world = sandbox_world
    body = _authorize_device(world)
    assert set(body) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
    }
    assert "interval" not in body
    assert body["expires_in"] == 60
    assert re.fullmatch(r"[BCDFGHJKLMNPQRSTVWXZ]{8}", body["user_code"])
    assert body["verification_uri"] == world.web_base + "/oauth/device"
    assert body["verification_uri_complete"] == (
        f"{world.web_base}/oauth/device?user_code={body['user_code']}"
    )


def test_it_answers_pending_then_slow_down_when_polled_too_fast(
    sandbox_world: SandboxWorld,
) -> None:
    world = sandbox_world
    device = _authorize_device(world)
    first = _poll(world, device["device_code"])
    assert first.status_code == 400
    assert first.json()["error"] == "authorization_pending"
    second = _poll(world, device["device_code"])
    assert second.json()["error"] == "slow_down"
    assert second.json()["hint"]
    third = _poll(world, device["device_code"])
    assert third.json()["error"] == "slow_down"


def test_it_issues_tokens_acting_as_the_approving_user_once(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    device = _authorize_device(world)
    assert _poll(world, device["device_code"]).json()["error"] == "authorization_pending"
    world.sandbox.approve_device(
        world.tenant, device["user_code"], world.member.email, world.member.password
    )
    response = _poll(world, device["device_code"])
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["token_type"] == "bearer"
    assert tokens["refresh_token"]
    info = world.sandbox.introspect(tokens["access_token"])
    assert info["kind"] == "user"
    assert info["user_id"] == world.member.id
    assert info["scope"] == "rest_api:read"
    again = _poll(world, device["device_code"])
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    refreshed = world.refresh(world.device_app, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text


def test_it_answers_access_denied_when_the_user_denies(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    device = _authorize_device(world)
    world.sandbox.approve_device(
        world.tenant, device["user_code"], world.member.email, world.member.password, approve=False
    )
    response = _poll(world, device["device_code"])
    assert response.json()["error"] == "access_denied"


def test_it_answers_expired_token_after_the_code_expires(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    device = _authorize_device(world)
    world.sandbox.expire_codes(world.device_app.client_id, device=True)
    assert _poll(world, device["device_code"]).json()["error"] == "expired_token"
    with pytest.raises(SandboxError, match="not valid or has expired"):
        world.sandbox.approve_device(
            world.tenant, device["user_code"], world.member.email, world.member.password
        )


def test_it_uses_the_configured_device_code_lifetime(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    world.sandbox.set_lifetimes(device=5, client_id=world.device_app.client_id)
    assert _authorize_device(world)["expires_in"] == 5


def test_it_accepts_the_user_code_as_people_type_it(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    device = _authorize_device(world)
    code = device["user_code"]
    typed = f"{code[:4].lower()}-{code[4:].lower()}"
    world.sandbox.approve_device(world.tenant, typed, world.member.email, world.member.password)
    assert _poll(world, device["device_code"]).status_code == 200


def test_it_shows_the_code_entry_form_and_refuses_an_unknown_code(
    sandbox_world: SandboxWorld,
) -> None:
    world = sandbox_world
    with world.sandbox.sign_in(world.tenant, world.member.email, world.member.password) as browser:
        form = browser.get(world.web_base + "/oauth/device")
        assert form.status_code == 200
        assert 'name="user_code"' in form.text
        unknown = browser.get(world.web_base + "/oauth/device", params={"user_code": "BBBBBBBB"})
    assert unknown.status_code == 400
    assert "not valid or has expired" in unknown.text


def test_it_sends_a_signed_out_visitor_to_sign_in_first(sandbox_world: SandboxWorld) -> None:
    response = httpx.get(sandbox_world.web_base + "/oauth/device?user_code=BCDFGHJK")
    assert response.status_code == 302
    assert "/login?next=" in response.headers["location"]


def test_it_refuses_a_client_without_the_device_grant(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    response = world.http.post(
        world.sandbox.device_url(world.tenant),
        data={"scope": "rest_api:read", **world.user_app.auth},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"


def test_it_refuses_an_unknown_client_and_a_scope_too_wide(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    unknown = world.http.post(
        world.sandbox.device_url(world.tenant), data={"client_id": "nobody", "scope": ""}
    )
    assert unknown.status_code == 401
    assert unknown.json()["error"] == "invalid_client"
    wide = world.http.post(
        world.sandbox.device_url(world.tenant),
        data={"client_id": world.device_app.client_id, "scope": "tasks:read"},
    )
    assert wide.status_code == 400
    assert wide.json()["error"] == "invalid_scope"


def test_it_lets_only_a_team_admin_approve_a_service_account_device(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    app = sandbox.create_application(
        "Service CLI",
        confidential=False,
        grant_types=[DEVICE_GRANT],
        service_account=True,
        tenants=[world.tenant],
    )
    response = world.http.post(
        world.sandbox.device_url(world.tenant),
        data={"client_id": app["client_id"], "scope": "rest_api:read"},
    )
    device = response.json()
    with pytest.raises(SandboxError, match="not an admin"):
        world.sandbox.approve_device(
            world.tenant, device["user_code"], world.member.email, world.member.password
        )
    world.sandbox.approve_device(
        world.tenant, device["user_code"], world.admin.email, world.admin.password
    )
    polled = world.http.post(
        world.token_url,
        data={
            "grant_type": DEVICE_GRANT,
            "device_code": device["device_code"],
            "client_id": app["client_id"],
        },
    )
    assert polled.status_code == 200, polled.text
    info = world.sandbox.introspect(polled.json()["access_token"])
    assert info["kind"] == "service_account"
    assert info["team_id"] == world.team_id
