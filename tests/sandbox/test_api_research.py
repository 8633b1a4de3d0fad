"""GET /v1/research, /v1/contenttype, /v1/field and POST /v2/research/note over real HTTP."""

from __future__ import annotations

import json
import re
from datetime import datetime

from tests.sandbox.research_api import (
    FIELDS,
    READ,
    WRITE,
    Api,
    service_token,
    team_token,
    user_token,
)
from tests.support.sandbox import Sandbox, SandboxWorld, WorldUser

OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")
ITEM_KEYS = {"id", "title", "contentType", "user", "fields", "created", "modified"}


def test_it_pages_research_in_a_stable_id_order_with_the_documented_envelope(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    sandbox.generate_research(world.tenant, world.team_id, 250, seed=11)
    api = Api(world, team_token(world))

    first = api.page()
    assert set(first) == {"total", "offset", "limit", "results"}
    assert (first["total"], first["offset"], first["limit"]) == (250, 0, 10)
    assert len(first["results"]) == 10
    item = first["results"][0]
    assert set(item) == ITEM_KEYS
    assert OBJECT_ID.match(item["id"])
    assert OBJECT_ID.match(item["contentType"])
    assert item["user"] in {world.admin.id, world.member.id}
    assert datetime.fromisoformat(item["modified"]) >= datetime.fromisoformat(item["created"])
    assert item["fields"]["entities"]
    assert all(OBJECT_ID.match(c) for c in item["fields"]["entities"])

    pages = [api.page(offset=offset, limit=100) for offset in (0, 100, 200)]
    assert [len(p["results"]) for p in pages] == [100, 100, 50]
    ids = [doc["id"] for p in pages for doc in p["results"]]
    assert len(set(ids)) == 250
    assert ids == sorted(ids)
    assert [doc["id"] for doc in first["results"]] == ids[:10]
    # The same request answers the same page.
    assert api.page(offset=100, limit=100) == pages[1]


def test_it_serves_at_most_100_items_per_page_and_says_so_in_the_envelope(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    sandbox.generate_research(world.tenant, world.team_id, 130, seed=5)
    api = Api(world, team_token(world))
    body = api.page(limit=1000)
    assert body["limit"] == 100
    assert len(body["results"]) == 100
    assert body["total"] == 130


def test_it_answers_an_empty_page_past_the_end_with_the_total(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    sandbox.generate_research(world.tenant, world.team_id, 3, seed=1)
    body = Api(world, team_token(world)).page(offset=500, limit=10)
    assert body == {"total": 3, "offset": 500, "limit": 10, "results": []}


def test_it_rejects_bad_paging_parameters_with_a_json_400(sandbox_world: SandboxWorld) -> None:
    api = Api(sandbox_world, team_token(sandbox_world))
    for params in (
        {"offset": "abc"},
        {"offset": "-1"},
        {"limit": "-5"},
        {"limit": "0"},
        {"limit": "1e3"},
        {"offset": "9" * 40},
        {"limit": "\u0661\u0660"},  # Arabic-Indic digits: not a number here
    ):
        response = api.http.get(api.base + "/v1/research", params=params, headers=api.headers)
        assert response.status_code == 400, params
        body = response.json()
        assert body["error"] == "invalid_request"
        assert body["error_description"]


def test_it_rejects_other_methods_and_non_json_accept_headers(sandbox_world: SandboxWorld) -> None:
    api = Api(sandbox_world, team_token(sandbox_world))
    response = api.http.delete(api.base + "/v1/research", headers=api.headers)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert api.get("/v1/research", headers={"Accept": "text/html"}).status_code == 406
    assert api.get("/v1/research", headers={"Accept": "text/html, */*;q=0.1"}).status_code == 200


def test_unknown_api_paths_answer_a_json_404(sandbox_world: SandboxWorld) -> None:
    api = Api(sandbox_world, team_token(sandbox_world))
    for path in ("/v1/research/", "/v1/nothing", "/v3/research"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"


def test_it_lists_content_types_and_fields_with_their_documented_properties(
    sandbox_world: SandboxWorld,
) -> None:
    api = Api(sandbox_world, user_token(sandbox_world, scope=f"{READ} {FIELDS}"))
    types = api.get("/v1/contenttype", limit=100).json()
    assert types["total"] == len(types["results"]) >= 2
    note = next(t for t in types["results"] if t["name"] == "note")
    assert set(note) == {"id", "name", "displayName"}
    assert note["displayName"] == "Note"

    fields = api.get("/v1/field", limit=100).json()
    assert fields["total"] == len(fields["results"])
    entities = next(
        f
        for f in fields["results"]
        if f["apiIdentifier"] == "entities" and f["contentType"] == note["id"]
    )
    assert set(entities) == {
        "id",
        "apiIdentifier",
        "name",
        "fieldType",
        "options",
        "contentType",
        "order",
        "disabled",
    }
    assert entities["fieldType"] == "lookup"
    assert entities["options"]["lookup"] == "entity"
    assert any(f["disabled"] for f in fields["results"])


# --- visibility by token kind ------------------------------------------------------------------


def _note(api: Api, user: str, title: str, *, private: bool = False) -> str:
    response = api.post("/v2/research/note", {"user": user, "title": title, "private": private})
    assert response.status_code == 201, response.text
    note_id: str = response.json()["id"]
    return note_id


def test_each_token_kind_sees_what_bipsync_says_it_sees(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    # Shared with the partner's service account: 20 documents, a few of them private notes.
    sandbox.generate_research(
        world.tenant,
        world.team_id,
        20,
        seed=3,
        share_with=[world.service_app.client_id],
        private_fraction=0.3,
    )
    # Not shared with the partner app.
    sandbox.generate_research(world.tenant, world.team_id, 5, seed=4, private_fraction=0)
    # Another team of the same tenant.
    other_team = sandbox.create_team(world.tenant, "Other desk")
    outsider_user = sandbox.create_user(
        world.tenant, other_team["id"], f"outsider@{world.tenant}.example", world.admin.password
    )
    outsider = WorldUser(outsider_user["id"], outsider_user["email"], world.admin.password)
    sandbox.generate_research(world.tenant, other_team["id"], 7, seed=5)

    team_api = Api(world, team_token(world))
    admin_api = Api(world, user_token(world, world.admin))
    member_api = Api(world, user_token(world, world.member))
    service_api = Api(world, service_token(world))
    outsider_api = Api(world, user_token(world, outsider))

    admin_private = _note(admin_api, world.admin.id, "Admin's private thoughts", private=True)
    member_shared = _note(member_api, world.member.id, "Member's shared note")
    service_owned = _note(service_api, world.member.id, "Written by the integration")

    everything = {doc["id"]: doc for doc in team_api.all_research()}
    # The team token sees all of the team's documents, private notes included, and no others.
    assert len(everything) == 20 + 5 + 3
    assert admin_private in everything

    admin_sees = admin_api.ids()
    member_sees = member_api.ids()
    assert admin_private in admin_sees
    assert admin_private not in member_sees
    assert member_shared in admin_sees
    assert member_shared in member_sees
    # A user sees the shared documents plus their own private ones: together, everything.
    assert admin_sees | member_sees == set(everything)
    for doc_id in admin_sees - member_sees:
        assert everything[doc_id]["user"] == world.admin.id
    for doc_id in member_sees - admin_sees:
        assert everything[doc_id]["user"] == world.member.id
    assert admin_sees != set(everything)  # the member's private notes stay hidden

    service_sees = service_api.ids()
    assert service_owned in service_sees
    # Shared with the app: the 20 generated ones minus their private notes; never the 5 others,
    # nor notes users wrote without sharing.
    shared_with_app = service_sees - {service_owned}
    assert 0 < len(shared_with_app) < 20
    assert shared_with_app <= admin_sees & member_sees
    assert member_shared not in service_sees
    assert admin_private not in service_sees

    outsider_sees = outsider_api.ids()
    assert len(outsider_sees) == 7
    assert not outsider_sees & set(everything)


def test_a_user_added_to_a_team_sees_its_shared_documents_at_once(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    sandbox.generate_research(world.tenant, world.team_id, 12, seed=2, private_fraction=0)
    desk = sandbox.create_team(world.tenant, "Credit desk")["id"]
    sandbox.create_user(world.tenant, desk, f"analyst@{world.tenant}.example", "pw-analyst-1")
    sandbox.generate_research(world.tenant, desk, 8, seed=3, private_fraction=0)
    api = Api(world, user_token(world, world.member))
    assert api.page()["total"] == 12
    sandbox.create_user(world.tenant, desk, world.member.email, world.member.password)
    assert api.page()["total"] == 20


def test_a_listing_follows_every_change_to_the_research(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    api = Api(world, team_token(world))
    assert api.page()["total"] == 0
    sandbox.generate_research(world.tenant, world.team_id, 30, seed=8)
    assert api.page()["total"] == 30
    note = _note(api, world.admin.id, "Fresh")
    assert note in api.ids()
    sandbox.mutate_research(world.tenant, world.team_id, 0.5, seed=1)
    after = api.all_research()
    assert len(after) == api.page()["total"]
    assert len({d["id"] for d in after}) == len(after)


# --- note creation -----------------------------------------------------------------------------


def test_it_creates_a_note_with_fields_and_lists_it(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    reader = Api(world, user_token(world, scope=f"{READ} {FIELDS}"))
    fields = reader.get("/v1/field", limit=100).json()["results"]
    types = reader.get("/v1/contenttype", limit=100).json()["results"]
    meeting = next(t for t in types if t["name"] == "meeting")
    meeting_fields = {f["apiIdentifier"]: f for f in fields if f["contentType"] == meeting["id"]}
    assert "meetingDate" in meeting_fields

    writer = Api(world, team_token(world))
    response = writer.post(
        "/v2/research/note",
        {
            "user": world.member.id,
            "title": "Lunch with the Apex Semiconductor CFO",
            "contentType": meeting["id"],
            "fields": {"rating": "Buy", "meetingDate": "2026-03-04"},
        },
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert OBJECT_ID.match(created["id"])
    assert created["user"] == world.member.id
    assert created["contentType"] == meeting["id"]

    listed = {doc["id"]: doc for doc in writer.all_research()}
    assert listed[created["id"]]["title"] == "Lunch with the Apex Semiconductor CFO"
    assert listed[created["id"]]["fields"] == {"rating": "Buy", "meetingDate": "2026-03-04"}


def test_a_note_needs_only_a_user(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    response = Api(world, team_token(world)).post("/v2/research/note", {"user": world.admin.id})
    assert response.status_code == 201
    assert OBJECT_ID.match(response.json()["id"])


def test_it_rejects_bad_note_bodies_with_a_json_400(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    api = Api(world, team_token(world))
    unknown_id = "0123456789abcdef01234567"

    def as_admin(**extra: object) -> bytes:
        return json.dumps({"user": world.admin.id, **extra}).encode()

    bad_bodies: list[bytes] = [
        b"",
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"title": "no user"}',
        b'{"user": 42}',
        b'{"user": "not-an-id"}',
        json.dumps({"user": unknown_id}).encode(),
        as_admin(fields={"nope": 1}),
        as_admin(fields={"entities": [unknown_id]}),
        as_admin(fields={"entities": "not a list"}),
        as_admin(fields={"rating": "Maybe"}),
        as_admin(fields=[]),
        as_admin(private="yes"),
        as_admin(contentType=unknown_id),
        as_admin(title="x" * 501),
    ]
    for body in bad_bodies:
        response = api.post("/v2/research/note", content=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"] == "invalid_request"
        assert response.json()["error_description"]


def test_it_refuses_an_oversized_note_body_without_a_server_error(
    sandbox_world: SandboxWorld,
) -> None:
    world = sandbox_world
    body = json.dumps({"user": world.admin.id, "title": "x" * (3 * 1024 * 1024)}).encode()
    response = Api(world, team_token(world)).post("/v2/research/note", content=body)
    assert response.status_code == 413
    assert response.json()["error"] == "request_too_large"


def test_a_user_token_cannot_write_notes_as_someone_else(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    api = Api(world, user_token(world, world.member, scope=f"{READ} {WRITE}"))
    response = api.post("/v2/research/note", {"user": world.admin.id})
    assert response.status_code == 400
    assert "as that user" in response.json()["error_description"]
    assert api.post("/v2/research/note", {"user": world.member.id}).status_code == 201
