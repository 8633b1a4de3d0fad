"""Races the partner app must survive: the sandbox serialises them like a real server would."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support.sandbox import SandboxWorld, query_of


def test_concurrent_refreshes_of_one_token_rotate_it_exactly_once(
    sandbox_world: SandboxWorld,
) -> None:
    world = sandbox_world
    tokens = world.connect()
    data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}

    def refresh(_: int) -> int:
        response = httpx.post(world.token_url, data={**data, **world.user_app.auth}, timeout=30)
        return response.status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = sorted(pool.map(refresh, range(6)))
    assert statuses == [200, 400, 400, 400, 400, 400]
    assert world.sandbox.token_requests(world.user_app.client_id, "refresh_token") == 1


def test_concurrent_exchanges_of_one_code_issue_tokens_once(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    start = world.start(world.user_app)
    code = query_of(world.sandbox.authorize(start.url, world.admin.email, world.admin.password))[
        "code"
    ]

    def exchange(_: int) -> int:
        return world.exchange(world.user_app, code, start.verifier).status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = sorted(pool.map(exchange, range(4)))
    assert statuses == [200, 400, 400, 400]
