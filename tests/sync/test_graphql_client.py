"""The partner's GraphQL client against the sandbox over real HTTP: data, paging, errors, limits,
faults. The token is a real sandbox token handed out as is: these tests are about the GraphQL
layer; the token service under it is the one every REST test exercises."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from bipsync_partner.sync.api import BipsyncApi, RetryPolicy
from bipsync_partner.sync.graphql import GraphqlClient, GraphqlError, QueryLimitExceeded
from tests.sandbox.graphql_api import graphql_token
from tests.support.sandbox import Sandbox, SandboxWorld


class SandboxToken:
    def __init__(self, token: str) -> None:
        self.token = token

    def access_token(self) -> str:
        return self.token

    def refresh_after_rejection(self, rejected: str) -> str:
        return self.token


def client_for(world: SandboxWorld, token: str, sleeps: list[float] | None = None) -> GraphqlClient:
    waits = sleeps if sleeps is not None else []
    api = BipsyncApi(
        api_base=world.api_base,
        tenant=f"{world.tenant}-{uuid.uuid4().hex[:6]}",
        tokens=SandboxToken(token),
        policy=RetryPolicy(attempts=3, backoff_base=0.01, backoff_cap=0.02),
        sleep=waits.append,
    )
    return GraphqlClient(api)


@pytest.fixture
def graphql(sandbox: Sandbox, sandbox_world: SandboxWorld) -> Iterator[GraphqlClient]:
    client = client_for(sandbox_world, graphql_token(sandbox_world))
    try:
        yield client
    finally:
        client.api.close()
        sandbox.clear_faults(target="graphql")


RESEARCH = """
query Research($first: Int, $after: String) {
  research(first: $first, after: $after, sort: {by: CREATED_AT, direction: ASCENDING}) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { id title created user { email } } }
  }
}
"""


def test_it_reads_every_research_item_page_by_page(
    sandbox: Sandbox, sandbox_world: SandboxWorld, graphql: GraphqlClient
) -> None:
    sandbox.generate_research(sandbox_world.tenant, sandbox_world.team_id, 25, seed=3)

    pages = list(graphql.pages(RESEARCH, ["research"], page_size=10))
    nodes = [node for page in pages for node in page.nodes]

    assert [len(page.nodes) for page in pages] == [10, 10, 5]
    assert len({node["id"] for node in nodes}) == 25
    assert [node["created"] for node in nodes] == sorted(node["created"] for node in nodes)
    assert {node["user"]["email"] for node in nodes} <= {
        sandbox_world.admin.email,
        sandbox_world.member.email,
    }
    assert pages[0].total_count == 25
    assert pages[0].analysis["complexity"] > 0


def test_execute_returns_the_data_and_a_query_error_raises(graphql: GraphqlClient) -> None:
    data = graphql.execute(
        "query($email: String) { users(filter: {email: {equals: $email}}) { totalCount } }",
        {"email": "nobody@example.com"},
    )
    assert data == {"users": {"totalCount": 0}}

    with pytest.raises(GraphqlError) as caught:
        graphql.execute("{ research { edges { node { noSuchField } } } }")
    assert "noSuchField" in caught.value.messages[0]
    assert caught.value.codes == ["GRAPHQL_VALIDATION_FAILED"]


CATEGORIES = """
query Categories($first: Int, $after: String) {
  categories(first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    edges { node { id name ticker classification { name } } }
  }
}
"""


def test_it_pages_through_ten_thousand_categories(
    sandbox: Sandbox, sandbox_world: SandboxWorld, graphql: GraphqlClient
) -> None:
    made = sandbox.generate_categories(sandbox_world.tenant, 10_000, seed=1)
    started = time.monotonic()
    pages = list(graphql.pages(CATEGORIES, ["categories"]))
    seconds = time.monotonic() - started

    ids = [node["id"] for page in pages for node in page.nodes]
    total = graphql.execute("{ categories { totalCount } }")["categories"]["totalCount"]

    assert made["created"] == 10_000
    assert total == 10_000 + 417  # and the catalogue's companies, sectors and regions
    assert len(ids) == total
    assert len(set(ids)) == total
    assert len(pages) == -(-total // 100)
    companies = [
        n for page in pages for n in page.nodes if n["classification"]["name"] == "Company"
    ]
    assert len(companies) == 10_000 + 400  # and the catalogue's 400
    assert all(n["ticker"] and n["classification"]["name"] == "Company" for n in companies)
    assert seconds < 10, f"{len(pages)} pages took {seconds:.1f} s"


def nested(levels: int) -> str:
    inner = "id"
    for _ in range(levels):
        inner = f"research(first: 1) {{ edges {{ node {{ user {{ {inner} }} }} }} }}"
    return f"{{ users(first: 1) {{ edges {{ node {{ {inner} }} }} }} }}"


def test_limits_are_classified_by_the_client(
    sandbox: Sandbox, sandbox_world: SandboxWorld, graphql: GraphqlClient
) -> None:
    with pytest.raises(QueryLimitExceeded) as depth:
        graphql.execute(nested(3))
    assert depth.value.code == "depth"
    assert depth.value.codes == ["DEPTH_LIMIT_EXCEEDED"]

    with pytest.raises(QueryLimitExceeded) as complexity:
        graphql.execute(
            "{ users(first: 100) { edges { node { research(first: 100) "
            "{ edges { node { id title created modified fields } } } } } } }"
        )
    assert complexity.value.code == "complexity"

    with pytest.raises(QueryLimitExceeded) as request_size:
        graphql.execute("#" + "x" * (1024 * 1024) + "\n{ me { serviceAccount } }")
    assert request_size.value.code == "size"
    assert request_size.value.status == 413

    sandbox.set_graphql_limits(max_response_bytes=500)
    try:
        with pytest.raises(QueryLimitExceeded) as response_size:
            graphql.execute("{ categories(first: 50) { edges { node { name } } } }")
        assert response_size.value.code == "size"
        sandbox.set_graphql_limits(max_response_bytes=10_000_000, timeout_ms=1)
        with pytest.raises(QueryLimitExceeded) as timeout:
            graphql.execute("{ research { totalCount } users { totalCount } }")
        assert timeout.value.code == "timeout"
        assert timeout.value.transient is True
    finally:
        sandbox.reset_graphql_limits()


def test_a_missing_scope_inside_a_200_raises_with_the_partial_data(
    sandbox_world: SandboxWorld,
) -> None:
    client = client_for(sandbox_world, graphql_token(sandbox_world, "users:read"))
    with client.api, pytest.raises(GraphqlError) as caught:
        client.execute("{ users { totalCount } categories { totalCount } }")

    assert not isinstance(caught.value, QueryLimitExceeded)
    assert caught.value.code == "INSUFFICIENT_SCOPE"
    assert caught.value.status is None
    assert caught.value.data == {"users": {"totalCount": 2}, "categories": None}
    assert "categories:read" in caught.value.sentence


def test_a_503_on_graphql_is_retried_and_then_succeeds(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    sleeps: list[float] = []
    client = client_for(sandbox_world, graphql_token(sandbox_world), sleeps)
    sandbox.set_fault("status", target="graphql", status=503, count=1, tenant=sandbox_world.tenant)
    try:
        with client.api:
            data = client.execute("{ me { serviceAccount } }")
    finally:
        sandbox.clear_faults(target="graphql")

    assert data == {"me": {"serviceAccount": False}}
    assert client.api.retried == 1
    assert len(sleeps) == 1
    client_id = sandbox_world.team_app.client_id
    assert sandbox.api_requests(client_id, "POST /v1/graphql", "fault_503") == 1
    assert sandbox.api_requests(client_id, "POST /v1/graphql") == 1


def test_a_429_on_graphql_waits_as_retry_after_says(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    sleeps: list[float] = []
    client = client_for(sandbox_world, graphql_token(sandbox_world), sleeps)
    sandbox.set_fault(
        "rate_limit", target="graphql", delay_ms=2000, count=1, tenant=sandbox_world.tenant
    )
    try:
        with client.api:
            data = client.execute("{ users { totalCount } }")
    finally:
        sandbox.clear_faults(target="graphql")

    assert data == {"users": {"totalCount": 2}}
    assert client.api.rate_limited == 1
    # The tenant's gate was closed for Retry-After (2 s); the client waited what was left of it.
    assert len(sleeps) == 1
    assert 1.0 < sleeps[0] <= 2.0
