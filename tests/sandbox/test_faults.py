"""Token-endpoint fault injection, switched at run time through the admin API."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.sandbox import Sandbox, SandboxError, SandboxWorld


@pytest.fixture
def tokens(sandbox_world: SandboxWorld) -> dict[str, str]:
    return dict(sandbox_world.connect())


def test_it_answers_5xx_without_rotating_then_recovers(
    sandbox_world: SandboxWorld, tokens: dict[str, str]
) -> None:
    world = sandbox_world
    client_id = world.user_app.client_id
    world.sandbox.set_fault("status", status=503, count=1, client_id=client_id)
    failed = world.refresh(world.user_app, tokens["refresh_token"])
    assert failed.status_code == 503
    assert failed.json()["error"] == "temporarily_unavailable"
    # The faulted request was not processed: the same refresh token still works.
    recovered = world.refresh(world.user_app, tokens["refresh_token"])
    assert recovered.status_code == 200
    counts = world.sandbox.counters(client_id)[client_id]["token"]["refresh_token"]
    assert counts == {"fault_503": 1, "ok": 1}


def test_it_answers_500_until_the_fault_is_cleared(
    sandbox_world: SandboxWorld, tokens: dict[str, str]
) -> None:
    world = sandbox_world
    client_id = world.user_app.client_id
    world.sandbox.set_fault("status", status=500, client_id=client_id)
    for _ in range(2):
        assert world.refresh(world.user_app, tokens["refresh_token"]).status_code == 500
    world.sandbox.clear_faults(client_id=client_id)
    assert world.refresh(world.user_app, tokens["refresh_token"]).status_code == 200


def test_it_answers_slowly(sandbox_world: SandboxWorld, tokens: dict[str, str]) -> None:
    world = sandbox_world
    world.sandbox.set_fault("slow", delay_ms=1000, count=1, client_id=world.user_app.client_id)
    started = time.monotonic()
    response = world.refresh(world.user_app, tokens["refresh_token"])
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed >= 1.0
    started = time.monotonic()
    world.refresh(world.user_app, response.json()["refresh_token"])
    assert time.monotonic() - started < 1.0  # the fault was used up; margin for a busy machine


def test_a_client_that_times_out_on_a_slow_answer_still_holds_a_valid_token(
    sandbox_world: SandboxWorld, tokens: dict[str, str]
) -> None:
    world = sandbox_world
    world.sandbox.set_fault("slow", delay_ms=1500, count=1, client_id=world.user_app.client_id)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            world.token_url,
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                **world.user_app.auth,
            },
            timeout=0.3,
        )
    # "before" delays come before processing: the timed-out request has not rotated yet.
    assert world.sandbox.introspect(tokens["refresh_token"])["active"] is True


def test_it_closes_the_connection_without_processing(
    sandbox_world: SandboxWorld, tokens: dict[str, str]
) -> None:
    world = sandbox_world
    world.sandbox.set_fault("close", count=1, client_id=world.user_app.client_id)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(
            world.token_url,
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                **world.user_app.auth,
            },
        )
    assert world.refresh(world.user_app, tokens["refresh_token"]).status_code == 200


def test_it_commits_the_rotation_then_loses_the_response(
    sandbox_world: SandboxWorld, tokens: dict[str, str]
) -> None:
    world = sandbox_world
    client_id = world.user_app.client_id
    world.sandbox.set_fault(
        "lose_response", count=1, client_id=client_id, grant_type="refresh_token"
    )
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(
            world.token_url,
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                **world.user_app.auth,
            },
        )
    assert world.sandbox.token_requests(client_id, "refresh_token") == 1
    assert world.sandbox.introspect(tokens["refresh_token"])["active"] is False
    retry = world.refresh(world.user_app, tokens["refresh_token"])
    assert retry.status_code == 400
    assert retry.json()["error"] == "invalid_grant"


def test_it_commits_the_rotation_then_alters_the_answer(
    sandbox_world: SandboxWorld, tokens: dict[str, str]
) -> None:
    world = sandbox_world
    client_id = world.user_app.client_id
    world.sandbox.set_fault(
        "alter_response",
        count=1,
        client_id=client_id,
        alter={"token_type": "mac", "expires_in": None, "extra": "x"},
    )
    altered = world.refresh(world.user_app, tokens["refresh_token"])
    assert altered.status_code == 200
    body = altered.json()
    assert (body["token_type"], "expires_in" in body, body["extra"]) == ("mac", False, "x")
    # The rotation behind the altered answer is committed: its refresh token is the live one.
    assert world.sandbox.introspect(tokens["refresh_token"])["active"] is False
    assert world.refresh(world.user_app, body["refresh_token"]).status_code == 200
    with pytest.raises(SandboxError, match="alter must be a JSON object"):
        world.sandbox.set_fault("alter_response", client_id=client_id, alter=["x"])  # type: ignore[arg-type]


def test_it_limits_a_fault_to_its_grant_type(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    world.sandbox.set_fault(
        "status", client_id=world.user_app.client_id, grant_type="refresh_token"
    )
    tokens = world.connect()  # the authorization-code exchange is not affected
    assert world.refresh(world.user_app, tokens["refresh_token"]).status_code == 503


def test_it_answers_429_with_retry_after(
    sandbox_world: SandboxWorld, tokens: dict[str, str]
) -> None:
    world = sandbox_world
    world.sandbox.set_fault(
        "rate_limit", delay_ms=2000, count=1, client_id=world.user_app.client_id
    )
    response = world.refresh(world.user_app, tokens["refresh_token"])
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"


@pytest.mark.parametrize("target", ["device_authorization", "revocation", "metadata"])
def test_it_injects_faults_on_the_other_oauth_endpoints(
    sandbox_world: SandboxWorld, target: str
) -> None:
    world = sandbox_world
    world.sandbox.set_fault("status", status=502, count=1, target=target, tenant=world.tenant)
    if target == "device_authorization":
        response = world.http.post(
            world.sandbox.device_url(world.tenant), data={"client_id": world.device_app.client_id}
        )
    elif target == "revocation":
        response = world.http.post(
            world.sandbox.revoke_url(world.tenant), data={"token": "x", **world.user_app.auth}
        )
    else:
        response = world.http.get(world.sandbox.metadata_url(world.tenant))
    assert response.status_code == 502


def test_it_scopes_a_fault_to_its_tenant(sandbox: Sandbox, sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    sandbox.set_fault("status", target="metadata", tenant=world.tenant + "-other")
    assert world.http.get(sandbox.metadata_url(world.tenant)).status_code == 200
    sandbox.clear_faults(target="metadata")


def test_it_lists_and_validates_faults(sandbox: Sandbox, sandbox_world: SandboxWorld) -> None:
    client_id = sandbox_world.user_app.client_id
    created = sandbox.set_fault("slow", delay_ms=10, client_id=client_id)
    listed = sandbox.admin("GET", "/_sandbox/faults")
    assert created in listed
    sandbox.clear_faults(client_id=client_id)
    assert created not in sandbox.admin("GET", "/_sandbox/faults")
    with pytest.raises(SandboxError, match="kind must be one of"):
        sandbox.set_fault("explode", client_id=client_id)
    with pytest.raises(SandboxError, match="status must be"):
        sandbox.set_fault("status", status=200, client_id=client_id)
