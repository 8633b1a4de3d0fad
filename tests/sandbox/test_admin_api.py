"""The sandbox admin API: guarded by a key, validates its input, changes lifetimes at run time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.support.sandbox import REPO_ROOT, Sandbox, SandboxError, SandboxWorld, free_port


@pytest.mark.parametrize("headers", [{}, {"X-Sandbox-Admin-Key": "wrong"}])
def test_it_refuses_calls_without_the_admin_key(sandbox: Sandbox, headers: dict[str, str]) -> None:
    response = httpx.post(
        sandbox.base_url + "/_sandbox/tenants", json={"slug": "x"}, headers=headers
    )
    assert response.status_code == 401


def test_it_validates_what_it_is_given(sandbox: Sandbox, sandbox_world: SandboxWorld) -> None:
    with pytest.raises(SandboxError, match="slug must match"):
        sandbox.create_tenant("Not_A_Slug")
    with pytest.raises(SandboxError, match="CIDRs"):
        sandbox.set_allowlist(sandbox_world.tenant, ["not-an-ip"])
    with pytest.raises(SandboxError, match="redirect_uris must be absolute"):
        sandbox.create_application("Bad", redirect_uris=["https://x.example/*"])
    with pytest.raises(SandboxError, match="Unknown grant types"):
        sandbox.create_application("Bad", grant_types=["password"])
    with pytest.raises(SandboxError, match="Unknown scopes"):
        sandbox.create_application("Bad", scopes=["everything"])
    bad_body = httpx.post(
        sandbox.base_url + "/_sandbox/tenants",
        content=b"[]",
        headers={"X-Sandbox-Admin-Key": sandbox.admin_key, "Content-Type": "application/json"},
    )
    assert bad_body.status_code == 400


def test_it_stores_the_tenant_ip_allowlist(sandbox: Sandbox, sandbox_world: SandboxWorld) -> None:
    tenant = sandbox.set_allowlist(sandbox_world.tenant, ["10.0.0.1/8", "192.0.2.7"])
    assert tenant["ip_allowlist"] == ["10.0.0.0/8", "192.0.2.7/32"]
    assert sandbox.set_allowlist(sandbox_world.tenant, [])["ip_allowlist"] == []


def test_it_returns_a_client_secret_once_and_keeps_it_working(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    app = sandbox.create_application(
        "Secretive",
        grant_types=["client_credentials"],
        team_id=sandbox_world.team_id,
        client_secret="a-fixed-secret-for-the-demo",
    )
    assert app["client_secret"] == "a-fixed-secret-for-the-demo"
    assert app["tenants"] == [sandbox_world.tenant]
    response = httpx.post(
        sandbox.token_url(sandbox_world.tenant),
        data={"grant_type": "client_credentials", "scope": f"team_{sandbox_world.team_id}"},
        auth=(app["client_id"], "a-fixed-secret-for-the-demo"),
    )
    assert response.status_code == 200


def test_it_sets_lifetimes_per_application(sandbox: Sandbox, sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    effective = sandbox.set_lifetimes(access=120, refresh=600, client_id=world.user_app.client_id)
    assert effective["access"] == 120
    assert effective["refresh"] == 600
    tokens = world.connect()
    assert tokens["expires_in"] == 120
    other = world.connect(world.service_app, user=world.admin)
    assert other["expires_in"] == 3600
    sandbox.reset_lifetimes(client_id=world.user_app.client_id)
    assert world.refresh(world.user_app, tokens["refresh_token"]).json()["expires_in"] == 3600


def test_it_sets_lifetimes_for_every_application(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    try:
        assert sandbox.set_lifetimes(access=90)["access"] == 90
        assert world.connect()["expires_in"] == 90
    finally:
        sandbox.reset_lifetimes()
    assert sandbox.admin("GET", "/_sandbox/lifetimes")["access"] == 3600


def test_it_answers_health_without_a_key(sandbox: Sandbox) -> None:
    assert httpx.get(sandbox.base_url + "/healthz").json() == {"status": "ok"}


def test_it_does_not_serve_the_internal_url_trees_directly(sandbox: Sandbox) -> None:
    assert httpx.post(sandbox.base_url + "/_api/v1/oauth/token").status_code == 404
    assert httpx.get(sandbox.base_url + "/_web/login").status_code == 404


def test_the_admin_api_does_not_exist_without_a_configured_key(sandbox: Sandbox) -> None:
    # A second server on the same database, started without SANDBOX_ADMIN_KEY.
    port = free_port()
    env = {**sandbox.env, "SANDBOX_ADMIN_KEY": ""}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bipsync_sandbox",
            "serve",
            "--no-migrate",
            "--port",
            str(port),
            "--workers",
            "1",
            "--threads",
            "1",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)
        for headers in [{}, {"X-Sandbox-Admin-Key": ""}, {"X-Sandbox-Admin-Key": "guess"}]:
            response = httpx.post(base + "/_sandbox/tenants", json={"slug": "x"}, headers=headers)
            assert response.status_code == 404
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
