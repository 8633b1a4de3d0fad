"""Helpers for the GraphQL tests: a team token with GraphQL scopes, and raw GraphQL calls."""

from __future__ import annotations

from typing import Any

import httpx

from tests.sandbox.research_api import team_token
from tests.support.sandbox import GRAPHQL_SCOPES, SandboxWorld

ALL = " ".join(GRAPHQL_SCOPES)


def graphql_token(world: SandboxWorld, scope: str = ALL) -> str:
    """A team token (client credentials) with the given GraphQL scopes."""
    return team_token(world, scope)


def post(world: SandboxWorld, token: str, query: str, **variables: Any) -> httpx.Response:
    return world.http.post(
        world.api_base + "/v1/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )


def answer(world: SandboxWorld, token: str, query: str, **variables: Any) -> dict[str, Any]:
    response = post(world, token, query, **variables)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
