"""The sandbox's GraphQL endpoint over real HTTP: what each type answers, who sees what, scopes,
limits, the query analysis and attachments' bytes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from tests.sandbox.graphql_api import ALL, answer, graphql_token, post
from tests.sandbox.research_api import team_token, user_token
from tests.support.sandbox import GRAPHQL_SCOPES, Sandbox, SandboxWorld


@pytest.fixture
def world(sandbox: Sandbox, sandbox_world: SandboxWorld) -> Iterator[SandboxWorld]:
    try:
        yield sandbox_world
    finally:
        sandbox.reset_graphql_limits()
        sandbox.clear_faults(target="graphql")


def codes(body: dict[str, object]) -> list[str]:
    errors = body.get("errors")
    assert isinstance(errors, list)
    return [error["extensions"]["code"] for error in errors]


def test_research_answers_with_its_content_type_author_body_and_fields(
    sandbox: Sandbox, world: SandboxWorld
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 40, seed=5, private_fraction=0)
    body = answer(
        world,
        graphql_token(world),
        """{ research(first: 100, filter: {contentType: {equals: "note"}}) {
              totalCount
              edges { node { id title contentType { name displayName } user { name email }
                             fields content created modified } } } }""",
    )
    items = [edge["node"] for edge in body["data"]["research"]["edges"]]

    assert items, "the generator makes notes"
    assert body["data"]["research"]["totalCount"] == len(items)
    assert {item["contentType"]["name"] for item in items} == {"note"}
    assert {item["user"]["name"] for item in items} <= {"Ada Admin", "Max Member"}
    assert all(item["content"].startswith("<") for item in items)
    assert all(item["fields"]["entities"] for item in items)
    assert all(item["created"].endswith("Z") for item in items)


def test_sorting_and_filters_narrow_and_order_the_research(
    sandbox: Sandbox, world: SandboxWorld
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 30, seed=6)
    token = graphql_token(world)
    query = """query($search: String) {
      research(first: 100, sort: {by: TITLE, direction: DESCENDING},
               filter: {title: {search: $search}, hasFields: true}) {
        edges { node { id title } } } }"""
    everything = [e["node"] for e in answer(world, token, query)["data"]["research"]["edges"]]
    titles = [item["title"] for item in everything]
    assert len(titles) == 30
    assert titles == sorted(titles, reverse=True)

    word = titles[0].split()[0]
    found = answer(world, token, query, search=word.lower())["data"]["research"]["edges"]
    assert found
    assert all(word.lower() in e["node"]["title"].lower() for e in found)

    two = [item["id"] for item in everything[:2]]
    by_id = answer(
        world,
        token,
        "query($ids: [ID!]) { research(filter: {id: {in: $ids}}) { totalCount } }",
        ids=two,
    )
    assert by_id["data"]["research"]["totalCount"] == 2


def test_a_member_sees_no_private_note_of_another_user(
    sandbox: Sandbox, world: SandboxWorld
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 60, seed=7, private_fraction=0.5)
    query = "{ research { totalCount } }"
    team_total = answer(world, graphql_token(world), query)["data"]["research"]["totalCount"]
    member = user_token(world, world.member, scope="research:read")
    member_total = answer(world, member, query)["data"]["research"]["totalCount"]

    assert team_total == 60
    assert 0 < member_total < team_total


def test_a_missing_scope_is_an_error_entry_at_its_path_and_the_rest_answers(
    world: SandboxWorld,
) -> None:
    token = graphql_token(world, "categories:read")
    body = answer(
        world,
        token,
        "{ categories(first: 1) { edges { node { name classification { name } } } } "
        "users { totalCount } }",
    )

    assert body["data"]["users"] is None
    node = body["data"]["categories"]["edges"][0]["node"]
    assert node["name"]
    assert node["classification"] is None
    assert codes(body) == ["INSUFFICIENT_SCOPE", "INSUFFICIENT_SCOPE"]
    paths = sorted(error["path"][0] for error in body["errors"])
    assert paths == ["categories", "users"]


def test_rest_read_alone_reads_nothing_through_graphql(world: SandboxWorld) -> None:
    body = answer(world, team_token(world, "rest_api:read"), "{ research { totalCount } }")
    assert body["data"] == {"research": None}
    assert codes(body) == ["INSUFFICIENT_SCOPE"]


def test_categories_carry_tickers_classifications_and_external_ids(
    sandbox: Sandbox, world: SandboxWorld
) -> None:
    sandbox.generate_categories(world.tenant, 50, seed=1)
    token = graphql_token(world)
    company = answer(world, token, "{ classifications { edges { node { id name } } } }")["data"][
        "classifications"
    ]["edges"]
    company_id = next(e["node"]["id"] for e in company if e["node"]["name"] == "Company")
    body = answer(
        world,
        token,
        """query($c: ID) { categories(first: 100, filter: {classification: {equals: $c},
                                                        name: {search: "-"}}) {
             totalCount edges { node { name ticker classification { name } externalIds } } } }""",
        c=company_id,
    )
    nodes = [e["node"] for e in body["data"]["categories"]["edges"]]

    assert body["data"]["categories"]["totalCount"] == 50
    assert all(n["ticker"] and n["classification"]["name"] == "Company" for n in nodes)
    assert all(list(n["externalIds"]) == ["crm"] for n in nodes)
    ticker = nodes[0]["ticker"]
    by_ticker = answer(
        world,
        token,
        "query($t: String) { categories(filter: {ticker: {equals: $t}}) "
        "{ edges { node { ticker } } } }",
        t=ticker,
    )
    assert [e["node"]["ticker"] for e in by_ticker["data"]["categories"]["edges"]] == [ticker]


def test_contacts_projects_and_me(sandbox: Sandbox, world: SandboxWorld) -> None:
    sandbox.generate_contacts(world.tenant, 3, seed=1)
    sandbox.generate_projects(world.tenant, 2, seed=1)
    body = answer(
        world,
        user_token(world, world.member, scope=ALL),
        """{ contacts { totalCount edges { node { name email externalIds } } }
             projects { totalCount edges { node { name stage } } }
             me { user { email name } team { id } serviceAccount } }""",
    )
    data = body["data"]

    assert data["contacts"]["totalCount"] == 3
    assert all("@" in e["node"]["email"] for e in data["contacts"]["edges"])
    assert data["projects"]["totalCount"] == 2
    assert all(e["node"]["stage"] for e in data["projects"]["edges"])
    assert data["me"] == {
        "user": {"email": world.member.email, "name": "Max Member"},
        "team": {"id": world.team_id},
        "serviceAccount": False,
    }


def test_cursors_page_forward_and_backward(sandbox: Sandbox, world: SandboxWorld) -> None:
    sandbox.generate_contacts(world.tenant, 7, seed=2)
    token = graphql_token(world)
    query = """query($first: Int, $after: String, $last: Int, $before: String) {
      contacts(first: $first, after: $after, last: $last, before: $before) {
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
        edges { cursor node { id } } } }"""
    everything = answer(world, token, query, first=7)["data"]["contacts"]
    ids = [edge["node"]["id"] for edge in everything["edges"]]
    page = answer(world, token, query, first=3, after=everything["edges"][1]["cursor"])
    window = page["data"]["contacts"]
    assert [e["node"]["id"] for e in window["edges"]] == ids[2:5]
    assert window["pageInfo"]["hasNextPage"]
    assert window["pageInfo"]["hasPreviousPage"]

    back = answer(world, token, query, last=2, before=window["pageInfo"]["startCursor"])
    assert [e["node"]["id"] for e in back["data"]["contacts"]["edges"]] == ids[0:2]
    assert not everything["pageInfo"]["hasNextPage"]


def test_bad_arguments_and_bodies_get_a_sentence_not_a_server_error(world: SandboxWorld) -> None:
    token = graphql_token(world)
    too_big = answer(world, token, "{ users(first: 101) { totalCount } }")
    assert codes(too_big) == ["BAD_USER_INPUT"]
    assert "at most 100" in too_big["errors"][0]["message"]
    junk = answer(world, token, '{ users(after: "nonsense") { totalCount } }')
    assert codes(junk) == ["BAD_USER_INPUT"]

    for content in (
        b"not json",
        b"[]",
        b'{"query": 3}',
        b'{"query": "{ me { serviceAccount } }", "variables": 1}',
    ):
        response = world.http.post(
            world.api_base + "/v1/graphql",
            content=content,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        assert response.status_code == 400, content
        assert response.json()["error_description"]
    assert (
        world.http.get(
            world.api_base + "/v1/graphql", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 405
    )


def test_every_answer_carries_the_query_analysis(world: SandboxWorld) -> None:
    body = answer(
        world,
        graphql_token(world),
        "{ users(first: 10) { edges { node { id name } } } }",
    )
    analysis = body["extensions"]["queryAnalysis"]
    # users 1 + 10 x (edges 1 + node 1 + id 1 + name 1)
    assert analysis["complexity"] == 41
    assert analysis["depth"] == 3
    assert isinstance(analysis["time"], int)


def nested(levels: int) -> str:
    """users > edges > node, then (research > edges > node > user) ``levels`` times."""
    inner = "id"
    for _ in range(levels):
        inner = f"research(first: 1) {{ edges {{ node {{ user {{ {inner} }} }} }} }}"
    return f"{{ users(first: 1) {{ edges {{ node {{ {inner} }} }} }} }}"


def test_a_query_deeper_than_13_is_refused_before_it_runs(world: SandboxWorld) -> None:
    token = graphql_token(world)
    fine = answer(world, token, nested(2))  # depth 3 + 4 + 4 = 11
    assert "errors" not in fine
    assert fine["extensions"]["queryAnalysis"]["depth"] == 11

    body = answer(world, token, nested(3))  # depth 15
    assert "data" not in body
    assert codes(body) == ["DEPTH_LIMIT_EXCEEDED"]
    assert body["extensions"]["queryAnalysis"]["depth"] > 13


def test_a_query_over_the_complexity_limit_is_refused_also_through_variables(
    world: SandboxWorld,
) -> None:
    query = """query($outer: Int, $inner: Int) { users(first: $outer) { edges { node {
      research(first: $inner) { edges { node { id title created modified fields } } } } } } }"""
    token = graphql_token(world)
    # users: 1 + outer x (edges 1 + node 1 + research (1 + inner x (edges 1 + node 1 + 5)))
    under = answer(world, token, query, outer=80, inner=100)
    assert "errors" not in under
    assert under["extensions"]["queryAnalysis"]["complexity"] == 1 + 80 * (2 + 1 + 100 * 7)

    over = answer(world, token, query, outer=100, inner=100)
    assert "data" not in over
    assert codes(over) == ["COMPLEXITY_LIMIT_EXCEEDED"]
    assert over["extensions"]["queryAnalysis"]["complexity"] == 1 + 100 * (2 + 1 + 100 * 7)


def test_a_request_over_1_mb_is_a_413_with_a_sentence(world: SandboxWorld) -> None:
    padding = "#" + "x" * (1024 * 1024) + "\n"
    response = post(world, graphql_token(world), padding + "{ me { serviceAccount } }")
    assert response.status_code == 413
    assert "at most 1048576 bytes" in response.json()["error_description"]


def test_an_answer_over_the_response_limit_is_replaced_by_an_error(
    sandbox: Sandbox, world: SandboxWorld
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 20, seed=8)
    sandbox.set_graphql_limits(max_response_bytes=2_000)
    body = answer(world, graphql_token(world), "{ research { edges { node { title fields } } } }")
    assert "data" not in body
    assert codes(body) == ["RESPONSE_TOO_LARGE"]


def test_a_query_over_the_time_limit_answers_timeout(sandbox: Sandbox, world: SandboxWorld) -> None:
    sandbox.set_graphql_limits(timeout_ms=1)
    body = answer(world, graphql_token(world), "{ research { totalCount } users { totalCount } }")
    assert "data" not in body
    assert codes(body) == ["TIMEOUT"]


def test_an_attachment_lists_in_graphql_and_downloads_its_bytes(
    sandbox: Sandbox, world: SandboxWorld
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 10, seed=9, private_fraction=0)
    token = graphql_token(world)
    notes = answer(
        world,
        token,
        '{ research(filter: {contentType: {equals: "note"}}) { edges { node { id } } } }',
    )["data"]["research"]["edges"]
    note = notes[0]["node"]["id"]
    made = sandbox.create_attachment(world.tenant, note, "Q3 model.xlsx", 3 * 1024 * 1024 + 7)

    listed = answer(
        world,
        token,
        """query($ids: [ID!]) { research(first: 1, filter: {id: {in: $ids}}) { edges { node {
             attachments(first: 10) { totalCount edges { node { id fileName length contentType } } } } } } }""",
        ids=[note],
    )["data"]["research"]["edges"][0]["node"]["attachments"]
    assert listed["totalCount"] == 1
    assert listed["edges"][0]["node"] == {
        "id": made["id"],
        "fileName": "Q3 model.xlsx",
        "length": 3 * 1024 * 1024 + 7,
        "contentType": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    }

    url = f"{world.api_base}/v2/research/note/{note}/attachment/{made['id']}/download"
    digest = hashlib.sha256()
    with world.http.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status_code == 200
        assert response.headers["Content-Length"] == str(3 * 1024 * 1024 + 7)
        for chunk in response.iter_bytes():
            digest.update(chunk)
    assert digest.hexdigest() == made["sha256"]

    refused = world.http.get(
        url, headers={"Authorization": f"Bearer {graphql_token(world, 'users:read')}"}
    )
    assert refused.status_code == 401
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]


def test_faults_on_graphql_answer_before_the_query_runs(
    sandbox: Sandbox, world: SandboxWorld
) -> None:
    sandbox.set_fault("status", target="graphql", status=503, count=1, tenant=world.tenant)
    token = graphql_token(world)
    assert post(world, token, "{ me { serviceAccount } }").status_code == 503
    assert post(world, token, "{ me { serviceAccount } }").status_code == 200


def test_every_graphql_scope_of_the_world_apps_is_one_bipsync_documents() -> None:
    from bipsync_sandbox.authserver.scopes import GRAPHQL_SCOPES as DOCUMENTED

    assert set(GRAPHQL_SCOPES) <= set(DOCUMENTED)
