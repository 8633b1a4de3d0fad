"""Helpers for the REST slice tests: tokens of each kind, and a small API client.

Tokens come from the sandbox's real OAuth endpoints (authorization code through the pages, client
credentials at the token endpoint), so the API tests exercise real issued tokens.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.sandbox import SandboxWorld, WorldUser

READ = "rest_api:read"
WRITE = "rest_api:write"
FIELDS = "rest_api:fields:read"


def team_token(world: SandboxWorld, scope: str = f"{READ} {WRITE}") -> str:
    """Client credentials with the team scope: a token that sees everything in the team."""
    response = world.http.post(
        world.token_url,
        data={
            "grant_type": "client_credentials",
            "scope": f"{scope} team_{world.team_id}".strip(),
            **world.team_app.auth,
        },
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def user_token(
    world: SandboxWorld, user: WorldUser | None = None, scope: str = f"{READ} {WRITE} {FIELDS}"
) -> str:
    token: str = world.connect(world.user_app, user=user or world.admin, scope=scope)[
        "access_token"
    ]
    return token


def service_token(world: SandboxWorld, scope: str = f"{READ} {WRITE} {FIELDS}") -> str:
    """The service-account variation: approved by the team admin, acts as the app's account."""
    token: str = world.connect(world.service_app, user=world.admin, scope=scope)["access_token"]
    return token


class Api:
    """REST calls against one tenant with one bearer token."""

    def __init__(self, world: SandboxWorld, token: str | None) -> None:
        self.world = world
        self.base = world.api_base
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = world.http

    def get(
        self, path: str, headers: dict[str, str] | None = None, **params: Any
    ) -> httpx.Response:
        return self.http.get(
            self.base + path, params=params, headers={**self.headers, **(headers or {})}
        )

    def post(self, path: str, body: Any = None, content: bytes | None = None) -> httpx.Response:
        if content is not None:
            return self.http.post(
                self.base + path,
                content=content,
                headers={**self.headers, "Content-Type": "application/json"},
            )
        return self.http.post(self.base + path, json=body, headers=self.headers)

    def page(self, **params: Any) -> dict[str, Any]:
        response = self.get("/v1/research", **params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def all_research(self) -> list[dict[str, Any]]:
        """Every visible document, paging 100 at a time."""
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            body = self.page(offset=offset, limit=100)
            items.extend(body["results"])
            offset += len(body["results"])
            if not body["results"] or offset >= body["total"]:
                return items

    def ids(self) -> set[str]:
        return {item["id"] for item in self.all_research()}
