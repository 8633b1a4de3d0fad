"""API faults (target "api"), switched on at run time through the admin API: 5xx, 429, slow, close."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.sandbox.research_api import Api, team_token
from tests.support.sandbox import Sandbox, SandboxError, SandboxWorld


@pytest.fixture
def api(sandbox: Sandbox, sandbox_world: SandboxWorld) -> Iterator[Api]:
    try:
        yield Api(sandbox_world, team_token(sandbox_world))
    finally:
        sandbox.clear_faults(target="api")


def test_the_next_three_pages_answer_503_then_the_api_recovers(
    sandbox: Sandbox, sandbox_world: SandboxWorld, api: Api
) -> None:
    sandbox.set_fault("status", target="api", status=503, count=3, tenant=sandbox_world.tenant)
    statuses = [api.get("/v1/research").status_code for _ in range(4)]
    assert statuses == [503, 503, 503, 200]
    client_id = sandbox_world.team_app.client_id
    assert sandbox.api_requests(client_id, outcome="fault_503") == 3
    assert sandbox.api_requests(client_id) == 1


def test_a_status_fault_answers_the_status_it_was_given(
    sandbox: Sandbox, sandbox_world: SandboxWorld, api: Api
) -> None:
    sandbox.set_fault("status", target="api", status=500, count=1, tenant=sandbox_world.tenant)
    response = api.get("/v1/research")
    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/json"
    assert api.get("/v1/research").status_code == 200


def test_a_rate_limit_fault_answers_429_with_retry_after(
    sandbox: Sandbox, sandbox_world: SandboxWorld, api: Api
) -> None:
    sandbox.set_fault(
        "rate_limit", target="api", delay_ms=2000, count=2, tenant=sandbox_world.tenant
    )
    for _ in range(2):
        response = api.get("/v1/research")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "2"
    assert api.get("/v1/research").status_code == 200


def test_a_slow_fault_delays_the_answer(
    sandbox: Sandbox, sandbox_world: SandboxWorld, api: Api
) -> None:
    sandbox.set_fault("slow", target="api", delay_ms=1000, count=1, tenant=sandbox_world.tenant)
    started = time.monotonic()
    response = api.get("/v1/research")
    assert response.status_code == 200
    assert time.monotonic() - started >= 1.0
    started = time.monotonic()
    assert api.get("/v1/research").status_code == 200
    assert time.monotonic() - started < 1.0  # the fault was used up; margin for a busy machine


def test_a_close_fault_drops_the_connection_without_an_answer(
    sandbox: Sandbox, sandbox_world: SandboxWorld, api: Api
) -> None:
    sandbox.set_fault("close", target="api", count=1, tenant=sandbox_world.tenant)
    with pytest.raises(httpx.TransportError):
        api.get("/v1/research")
    assert api.get("/v1/research").status_code == 200


def test_a_lost_response_still_creates_the_note(
    sandbox: Sandbox, sandbox_world: SandboxWorld, api: Api
) -> None:
    world = sandbox_world
    before = api.page()["total"]
    sandbox.set_fault("lose_response", target="api", count=1, tenant=world.tenant)
    with pytest.raises(httpx.TransportError):
        api.post("/v2/research/note", {"user": world.admin.id, "title": "Did it land?"})
    titles = [doc["title"] for doc in api.all_research()]
    assert len(titles) == before + 1
    assert "Did it land?" in titles


def test_faults_can_target_one_path_and_one_client(
    sandbox: Sandbox, sandbox_world: SandboxWorld, api: Api
) -> None:
    world = sandbox_world
    research_path = urlsplit(world.api_base).path + "/v1/research"
    sandbox.set_fault("status", target="api", status=502, path_prefix=research_path)
    assert api.get("/v1/research").status_code == 502
    assert api.get("/v1/research").status_code == 502  # no count: until cleared
    assert api.get("/v1/contenttype").status_code == 200
    sandbox.clear_faults(target="api")

    sandbox.set_fault("status", target="api", status=503, client_id="someone-else")
    assert api.get("/v1/research").status_code == 200
    sandbox.set_fault("status", target="api", status=503, client_id=world.team_app.client_id)
    assert api.get("/v1/research").status_code == 503
    sandbox.clear_faults(target="api")
    assert api.get("/v1/research").status_code == 200


def test_token_faults_do_not_touch_the_api(
    sandbox: Sandbox, sandbox_world: SandboxWorld, api: Api
) -> None:
    sandbox.set_fault("status", target="token", status=503, tenant=sandbox_world.tenant)
    try:
        assert api.get("/v1/research").status_code == 200
    finally:
        sandbox.clear_faults(target="token")


def test_an_empty_page_fault_answers_an_empty_listing_then_the_api_recovers(
    sandbox: Sandbox, sandbox_world: SandboxWorld, api: Api
) -> None:
    sandbox.generate_research(sandbox_world.tenant, sandbox_world.team_id, 3, seed=11)
    before = api.page()
    assert before["total"] >= 3
    sandbox.set_fault("empty_page", target="api", count=1, tenant=sandbox_world.tenant)
    response = api.get("/v1/research", offset=0, limit=100)
    assert response.status_code == 200
    assert response.json() == {"total": 0, "offset": 0, "limit": 100, "results": []}
    assert api.page()["total"] == before["total"]
    assert sandbox.api_requests(sandbox_world.team_app.client_id, outcome="fault_empty_page") == 1


def test_a_short_page_fault_keeps_the_first_results_and_the_real_total(
    sandbox: Sandbox, sandbox_world: SandboxWorld, api: Api
) -> None:
    sandbox.generate_research(sandbox_world.tenant, sandbox_world.team_id, 8, seed=12)
    whole = api.get("/v1/research", offset=0, limit=5).json()
    assert len(whole["results"]) == 5
    sandbox.set_fault("short_page", target="api", keep=2, count=1, tenant=sandbox_world.tenant)
    short = api.get("/v1/research", offset=0, limit=5).json()
    assert short["total"] == whole["total"]
    assert short["results"] == whole["results"][:2]
    assert api.get("/v1/research", offset=0, limit=5).json() == whole


def test_an_end_early_fault_ends_the_listing_after_the_first_results(
    sandbox: Sandbox, sandbox_world: SandboxWorld, api: Api
) -> None:
    sandbox.generate_research(sandbox_world.tenant, sandbox_world.team_id, 8, seed=13)
    whole = api.get("/v1/research", offset=2, limit=5).json()
    sandbox.set_fault("end_early", target="api", keep=3, count=1, tenant=sandbox_world.tenant)
    early = api.get("/v1/research", offset=2, limit=5).json()
    assert early == {**whole, "total": 5, "results": whole["results"][:3]}


def test_listing_faults_are_refused_for_the_oauth_endpoints(sandbox: Sandbox) -> None:
    with pytest.raises(SandboxError, match=r"-> 400: .*its target must be api"):
        sandbox.set_fault("short_page", target="token")
