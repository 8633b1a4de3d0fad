"""The partner's GraphQL client against the sandbox over real HTTP: data, paging, errors, limits,
faults. The token is a real sandbox token handed out as is: these tests are about the GraphQL
layer; the token service under it is the one every REST test exercises."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from bipsync_partner.sync.api import BipsyncApi, RetryPolicy
from bipsync_partner.sync.graphql import GraphqlClient, GraphqlError
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
