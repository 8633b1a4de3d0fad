"""``/users``, ``/categories``, ``/contacts`` and ``/projects``: a key reads its team's live rows
and nothing of another team's; ``/changes`` names each entry's resource and where to read it,
and leaves out a note body or an attachment of a document only a member's own connection sees."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import Team, User
from bipsync_partner.api.keys import NewKey
from bipsync_partner.connections.models import Connection
from bipsync_partner.feed.models import FeedEntry
from bipsync_partner.sync.models import (
    NoteBody,
    SyncedAttachment,
    SyncedCategory,
    SyncedClassification,
    SyncedContact,
    SyncedProject,
    SyncedUser,
    TenantRow,
)
from tests.api.conftest import document, key_client, machine
from tests.feed.waiting import eventually

pytestmark = pytest.mark.django_db


def bid(n: int) -> str:
    return f"{n:024x}"


def row(model: type[TenantRow], team: Team, n: int, **fields: Any) -> Any:
    return model._default_manager.create(
        team=team, tenant="acme", bipsync_id=bid(n), content_hash=f"h{n}", **fields
    )


@pytest.mark.parametrize(
    ("path", "model", "fields", "shown"),
    [
        ("users", SyncedUser, {"name": "Dana Analyst", "email": "dana@acme.example"}, "email"),
        ("contacts", SyncedContact, {"name": "Eve", "external_ids": {"crm": "c-1"}}, "name"),
        ("projects", SyncedProject, {"name": "Diligence", "stage": "Screening"}, "stage"),
    ],
)
def test_a_key_lists_and_reads_its_teams_rows_and_never_another_teams(
    team: Team,
    other_team: Team,
    team_key: NewKey,
    other_key: NewKey,
    path: str,
    model: type[TenantRow],
    fields: dict[str, Any],
    shown: str,
) -> None:
    mine = row(model, team, 1, **fields)
    gone = row(model, team, 2, deleted_at="2026-01-01T00:00:00Z", **fields)
    theirs = row(model, other_team, 3, **fields)
    client = key_client(team_key)

    listed = client.get(f"/api/v1/{path}").json()
    assert [r["id"] for r in listed["items"]] == [mine.pk]
    assert listed["items"][0][shown] == fields[shown]
    assert listed["items"][0]["bipsync_id"] == bid(1)
    one = client.get(f"/api/v1/{path}/{mine.pk}")
    assert one.status_code == 200
    assert one.json() == listed["items"][0]

    # Another team's id is a 404 that says no more; so is a row Bipsync no longer lists.
    for pk in (theirs.pk, gone.pk):
        other = client.get(f"/api/v1/{path}/{pk}")
        assert other.status_code == 404
        assert other.headers["Content-Type"] == "application/problem+json"
    assert [r["id"] for r in key_client(other_key).get(f"/api/v1/{path}").json()["items"]] == [
        theirs.pk
    ]


def test_a_category_comes_with_its_ticker_and_its_classifications_name(
    team: Team, team_key: NewKey
) -> None:
    row(SyncedClassification, team, 10, name="Company")
    apple = row(SyncedCategory, team, 11, name="Apple", ticker="AAPL", classification_bid=bid(10))
    orphan = row(SyncedCategory, team, 12, name="Unknown kind", classification_bid=bid(99))
    plain = row(SyncedCategory, team, 13, name="Macro")
    client = key_client(team_key)

    found = {c["id"]: c for c in client.get("/api/v1/categories").json()["items"]}

    assert found[apple.pk]["ticker"] == "AAPL"
    assert found[apple.pk]["classification"] == {"bipsync_id": bid(10), "name": "Company"}
    assert found[orphan.pk]["classification"] == {"bipsync_id": bid(99), "name": ""}
    assert found[plain.pk]["classification"] is None
    assert client.get(f"/api/v1/categories/{apple.pk}").json() == found[apple.pk]


def test_a_list_pages_by_cursor_and_refuses_a_bad_limit(team: Team, team_key: NewKey) -> None:
    made = [row(SyncedCategory, team, n, name=f"Company {n}").pk for n in range(5)]
    client = key_client(team_key)
    seen: list[int] = []
    after: str | None = None
    while True:
        query = f"?limit=2&after={after}" if after else "?limit=2"
        answer = client.get(f"/api/v1/categories{query}").json()
        seen += [c["id"] for c in answer["items"]]
        after = answer["next_cursor"]
        if after is None:
            break
    assert seen == made
    bad = client.get("/api/v1/categories?limit=0")
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "limit"
    wrong = client.get("/api/v1/users/not-a-number")
    assert wrong.status_code == 400
    assert wrong.json()["errors"][0]["field"] == "user_id"


@pytest.mark.django_db(transaction=True)  # the feed serves committed changes only
def test_changes_name_their_resource_and_where_the_api_serves_the_row(
    team: Team, team_key: NewKey, bob: User
) -> None:
    service = machine(team)
    own = machine(
        team,
        kind=Connection.Kind.USER,
        user=bob,
        client_id="",
        client_secret="",
        bipsync_team_id="",
    )
    shared = document(team, service, bid(1))
    private = document(team, own, bid(2))
    category = row(SyncedCategory, team, 3, name="Apple", ticker="AAPL")
    body = row(NoteBody, team, 1, content="<p>Shared.</p>")
    row(NoteBody, team, 2, content="<p>Bob's alone.</p>")
    model = row(SyncedAttachment, team, 5, document_bid=bid(1), file_name="model.xlsx")
    row(SyncedAttachment, team, 6, document_bid=bid(2), file_name="bobs.xlsx")
    category.name = "Apple Inc."
    category.content_hash = "h3-renamed"
    category.save()
    client = key_client(team_key)
    stored = FeedEntry.objects.filter(team=team).count()

    def read() -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = client.get("/api/v1/changes").json()["entries"]
        return entries

    # Bob's own document, its body and its attachment are left out: three fewer than stored.
    entries = eventually(read, lambda found: len(found) >= stored - 3)
    assert [(e["resource"], e["action"], e["row_id"], e["path"]) for e in entries] == [
        ("research", "created", shared.pk, f"/api/v1/research/{shared.pk}"),
        ("categories", "created", category.pk, f"/api/v1/categories/{category.pk}"),
        ("note_bodies", "created", body.pk, None),
        ("attachments", "created", model.pk, None),
        ("categories", "changed", category.pk, f"/api/v1/categories/{category.pk}"),
    ]
    assert private.pk not in {e["row_id"] for e in entries if e["resource"] == "research"}
    assert client.get(entries[1]["path"]).json()["name"] == "Apple Inc."
