"""Authorization server metadata (RFC 8414) per tenant, with RFC 9207's iss flag."""

from __future__ import annotations

import httpx
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oauth2.rfc9207 import AuthorizationServerMetadata as IssuerMetadata

from tests.support.sandbox import Sandbox, SandboxWorld


def test_it_publishes_valid_metadata_at_the_documented_address(
    sandbox_world: SandboxWorld,
) -> None:
    world = sandbox_world
    response = httpx.get(world.api_base + "/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    data = response.json()
    AuthorizationServerMetadata(data).validate(metadata_classes=[IssuerMetadata])
    assert data["issuer"] == world.api_base
    assert data["authorization_endpoint"] == world.web_base + "/oauth/authorize"
    assert data["token_endpoint"] == world.api_base + "/v1/oauth/token"
    assert data["device_authorization_endpoint"] == world.api_base + "/v1/oauth/device"
    assert data["revocation_endpoint"] == world.api_base + "/v1/oauth/revoke"
    assert data["code_challenge_methods_supported"] == ["S256"]
    assert data["authorization_response_iss_parameter_supported"] is True
    assert "client_secret_basic" in data["token_endpoint_auth_methods_supported"]
    assert "rest_api:read" in data["scopes_supported"]


def test_it_also_serves_the_rfc8414_path_form(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    url = f"{sandbox.base_url}/.well-known/oauth-authorization-server/t/{world.tenant}/api"
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.json()["issuer"] == world.api_base


def test_every_tenant_is_its_own_issuer(sandbox: Sandbox, sandbox_world: SandboxWorld) -> None:
    other = sandbox_world.tenant + "-b"
    sandbox.create_tenant(other)
    data = httpx.get(sandbox.metadata_url(other)).json()
    assert data["issuer"] == sandbox.api_base(other)
    assert data["issuer"] != sandbox_world.api_base


def test_it_answers_404_for_an_unknown_tenant(sandbox: Sandbox) -> None:
    response = httpx.get(sandbox.metadata_url("no-such-tenant"))
    assert response.status_code == 404
    page = httpx.get(sandbox.web_base("no-such-tenant") + "/login")
    assert page.status_code == 404
    assert "no Bipsync tenant" in page.text
