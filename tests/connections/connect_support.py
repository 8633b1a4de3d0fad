"""Helpers for the connect-page tests: a sandbox world whose applications are registered with the
partner's callback, the partner settings pointing at it, and the browser steps of a connect."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from django.test import Client

from accounts.models import Team
from tests.support.sandbox import Sandbox, SandboxWorld, WorldUser, make_world


def new_world(sandbox: Sandbox, redirect_uri: str | None = None) -> SandboxWorld:
    """A world whose applications are registered with the partner's callback (by default the
    session's reserved partner address, where nothing listens: the test client plays the app)."""
    return make_world(sandbox, redirect_uri=redirect_uri)


def configure_partner(
    settings: Any, sandbox: Sandbox, world: SandboxWorld, site_url: str | None = None
) -> None:
    settings.SITE_URL = site_url or sandbox.partner_url
    settings.BIPSYNC_API_BASE_TEMPLATE = sandbox.api_template
    settings.BIPSYNC_WEB_BASE_TEMPLATE = sandbox.web_template
    settings.BIPSYNC_ALLOW_INSECURE_LOOPBACK = True
    settings.BIPSYNC_USER_CLIENT_ID = world.user_app.client_id
    settings.BIPSYNC_USER_CLIENT_SECRET = world.user_app.client_secret
    settings.BIPSYNC_SERVICE_CLIENT_ID = world.service_app.client_id
    settings.BIPSYNC_SERVICE_CLIENT_SECRET = world.service_app.client_secret
    settings.BIPSYNC_PUBLIC_CLIENT_ID = world.device_app.client_id
    settings.BIPSYNC_SCOPES = "rest_api:read rest_api:fields:read"


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def start(client: Client, team: Team, tenant: str, kind: str = "user", connection: str = "") -> str:
    """Click "Connect Bipsync"; return the tenant's authorize URL the app redirects to."""
    data = {"tenant": tenant, "kind": kind}
    if connection:
        data["connection"] = connection
    response = client.post(f"/teams/{team.slug}/connections/connect/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    location: str = response["Location"]
    return location


def come_back(client: Client, location: str) -> Any:
    """Follow Bipsync's redirect to the partner's callback (the query exactly as sent)."""
    assert "/connections/callback/" in location
    return client.get("/connections/callback/?" + urlsplit(location).query)


def connect(
    client: Client,
    sandbox: Sandbox,
    team: Team,
    world: SandboxWorld,
    *,
    as_user: WorldUser,
    kind: str = "user",
    approve: bool = True,
    team_id: str | None = None,
) -> Any:
    url = start(client, team, world.tenant, kind)
    location = sandbox.authorize(url, as_user.email, as_user.password, approve, team_id=team_id)
    return come_back(client, location)


def code_exchanges(sandbox: Sandbox, client_id: str) -> int:
    """Every authorization_code request the client made, whatever the outcome."""
    return sandbox.token_requests(client_id, "authorization_code", outcome=None)


def api_accepts(world: SandboxWorld, access_token: str) -> bool:
    response = httpx.get(
        world.api_base + "/v1/research",
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10,
    )
    return response.status_code == 200
