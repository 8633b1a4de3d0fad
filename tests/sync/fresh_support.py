"""A sync world whose machine application may also read GraphQL and write notes: what the poll
for new research and the webhook hints need."""

from __future__ import annotations

from typing import Any

import httpx

from accounts.models import Team
from bipsync_partner.connections.models import Connection
from tests.support.sandbox import Sandbox, WorldApp, make_world
from tests.sync.conftest import SyncWorld, machine_connection

FRESH_SCOPES = (
    "rest_api:read",
    "rest_api:fields:read",
    "rest_api:write",
    "research:read",
    "users:read",
)


def make_fresh_world(sandbox: Sandbox) -> SyncWorld:
    world = make_world(sandbox)
    created = sandbox.create_application(
        name="Customer research export",
        client_id=f"fresh-{world.tenant}",
        grant_types=["client_credentials"],
        scopes=list(FRESH_SCOPES),
        team_id=world.team_id,
        tenants=[world.tenant],
    )
    app = WorldApp(created["client_id"], created["client_secret"], None, FRESH_SCOPES)
    return SyncWorld(world=world, machine_app=app)


def fresh_connection(team: Team, world: SyncWorld, **fields: Any) -> Connection:
    return machine_connection(team, world, scopes=" ".join(FRESH_SCOPES), **fields)


def team_token(world: SyncWorld) -> str:
    response = httpx.post(
        world.world.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": world.machine_app.client_id,
            "client_secret": world.machine_app.client_secret or "",
            "scope": f"rest_api:read rest_api:write team_{world.team_id}",
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def create_note(world: SyncWorld, title: str) -> str:
    """A note created at Bipsync (the sandbox's REST API); its id."""
    response = httpx.post(
        world.world.api_base + "/v2/research/note",
        json={"user": world.world.admin.id, "title": title, "content": "<p>Fresh.</p>"},
        headers={"Authorization": f"Bearer {team_token(world)}"},
        timeout=30,
    )
    assert response.status_code in (200, 201), response.text
    note_id: str = response.json()["id"]
    return note_id
