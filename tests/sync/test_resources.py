"""The GraphQL resources synced in the same run as the research, against the sandbox over real
HTTP: every resource stored as GraphQL lists it, an unchanged re-sync writing nothing, changes
and deletions, a grant without the scopes, and a run that resumes mid-resource."""

from __future__ import annotations

import hashlib
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection as db
from django.urls import reverse
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.connections.models import Connection
from bipsync_partner.sync import engine, scheduling
from bipsync_partner.sync.client import api_for
from bipsync_partner.sync.graphql import GraphqlClient
from bipsync_partner.sync.models import (
    NoteBody,
    ResearchDocument,
    ResourceScanPage,
    SyncedAttachment,
    SyncedCategory,
    SyncedClassification,
    SyncedUser,
    SyncRun,
)
from tests.conftest import signed_in
from tests.sandbox.research_api import Api, team_token
from tests.support.sandbox import GRAPHQL_SCOPES, Sandbox, SandboxWorld, make_world
from tests.sync.conftest import partner_settings_for

pytestmark = pytest.mark.django_db(transaction=True)

REST = ("rest_api:read", "rest_api:write")
BODY = "<p>Margins <b>expand</b> next year.</p>"


@pytest.fixture
def world(sandbox: Sandbox, settings: Settings) -> Iterator[SandboxWorld]:
    fresh = make_world(sandbox)
    for name, value in partner_settings_for(sandbox, fresh).items():
        setattr(settings, name, value)
    yield fresh
    fresh.http.close()


def connection(team: Team, world: SandboxWorld, scopes: tuple[str, ...]) -> Connection:
    """The customer's own client-credentials connection (it syncs by default)."""
    return Connection.objects.create(
        team=team,
        tenant=world.tenant,
        kind=Connection.Kind.CLIENT_CREDENTIALS,
        client_id=world.team_app.client_id,
        client_secret=world.team_app.client_secret,
        bipsync_team_id=world.team_id,
        scopes=" ".join(scopes),
    )


def sync(conn: Connection, *, slices: list[int] | None = None, slice_now: bool = False) -> SyncRun:
    """One run to its end in this process; with ``slice_now`` every slice ends after a page."""
    requested = scheduling.request_sync(conn, publish=lambda run_id, delay: None)
    for _ in range(500):
        deadline = time.monotonic() if slice_now else None
        outcome = engine.execute(requested.run.pk, api_factory=api_for, deadline=deadline)
        if slices is not None:
            slices.append(1)
        if outcome.action == engine.DONE:
            break
    run = SyncRun.objects.get(pk=requested.run.pk)
    assert run.status == SyncRun.Status.SUCCEEDED, (run.error_message, run.notes)
    return run


def a_note_with_attachments(world: SandboxWorld, files: int) -> str:
    api = Api(world, team_token(world, " ".join(REST)))
    created = api.post(
        "/v2/research/note", {"user": world.admin.id, "title": "Body test", "content": BODY}
    )
    assert created.status_code == 201, created.text
    note_id: str = created.json()["id"]
    for n in range(files):
        meta = api.post(
            f"/v2/research/note/{note_id}/attachment",
            {"fileName": f"model-{n}.xlsx", "length": 1000 + n, "user": world.admin.id},
        )
        assert meta.status_code == 201, meta.text
    return note_id


def graphql_nodes(conn: Connection, query: str, path: str) -> list[dict[str, Any]]:
    """What the sandbox's GraphQL lists, read directly (to compare the stored rows with)."""
    with api_for(conn) as api:
        return list(GraphqlClient(api).nodes(query, [path]))


CATEGORIES = """query($first: Int, $after: String) { categories(first: $first, after: $after) {
  pageInfo { hasNextPage endCursor } edges { node { id name ticker classification { id } } } } }"""
BODIES = """query($first: Int, $after: String) { research(first: $first, after: $after) {
  pageInfo { hasNextPage endCursor } edges { node { id content } } } }"""
USERS = """query($first: Int, $after: String) { users(first: $first, after: $after) {
  pageInfo { hasNextPage endCursor } edges { node { id name email } } } }"""


def test_a_sync_stores_every_resource_as_bipsync_lists_it(
    sandbox: Sandbox, world: SandboxWorld, team: Team
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 30, seed=5)
    note_id = a_note_with_attachments(world, 2)
    conn = connection(team, world, (*REST, *GRAPHQL_SCOPES))

    run = sync(conn)

    assert ResearchDocument.objects.filter(team=team).count() == 31
    listed = {n["id"]: n for n in graphql_nodes(conn, CATEGORIES, "categories")}
    stored = {
        c.bipsync_id: (c.name, c.ticker, c.classification_bid)
        for c in SyncedCategory.objects.filter(team=team)
    }
    assert stored == {
        bid: (n["name"], n["ticker"] or "", (n["classification"] or {}).get("id", ""))
        for bid, n in listed.items()
    }
    assert len(stored) > 100  # several pages of categories
    users = {u.bipsync_id: (u.name, u.email) for u in SyncedUser.objects.filter(team=team)}
    assert users == {n["id"]: (n["name"], n["email"]) for n in graphql_nodes(conn, USERS, "users")}
    assert world.admin.id in users
    assert set(SyncedClassification.objects.filter(team=team).values_list("name", flat=True)) >= {
        "Company"
    }
    bodies = dict(NoteBody.objects.filter(team=team).values_list("bipsync_id", "content"))
    assert bodies == {
        n["id"]: n["content"] for n in graphql_nodes(conn, BODIES, "research") if n["content"]
    }
    assert bodies[note_id] == BODY
    assert sorted(
        SyncedAttachment.objects.filter(team=team).values_list(
            "document_bid", "file_name", "length"
        )
    ) == [(note_id, "model-0.xlsx", 1000), (note_id, "model-1.xlsx", 1001)]
    progress = {r["name"]: r for r in run.resource_progress()}
    assert {name: r["state"] for name, r in progress.items()} == {
        name: "done"
        for name in (
            "users",
            "classifications",
            "categories",
            "contacts",
            "projects",
            "note_bodies",
            "attachments",
        )
    }
    assert progress["categories"]["created"] == len(listed)
    assert progress["categories"]["total"] == len(listed)
    assert not ResourceScanPage.objects.filter(run=run).exists()


def _row_versions(model: type[Any], team: Team) -> dict[str, str]:
    """Each row's xmin: it changes exactly when the row is written."""
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT bipsync_id, xmin::text FROM {model._meta.db_table} WHERE team_id = %s",
            [team.pk],
        )
        return dict(cursor.fetchall())


def test_an_unchanged_resync_writes_no_row_and_a_change_or_deletion_is_applied(
    sandbox: Sandbox, world: SandboxWorld, team: Team
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 10, seed=6)
    note_id = a_note_with_attachments(world, 5)
    conn = connection(team, world, (*REST, *GRAPHQL_SCOPES))
    sync(conn)
    categories = _row_versions(SyncedCategory, team)

    again = sync(conn)

    assert all(r["created"] == r["updated"] == 0 for r in again.resource_progress())
    assert _row_versions(SyncedCategory, team) == categories

    api = Api(world, team_token(world, " ".join(REST)))
    changed = api.http.put(
        f"{world.api_base}/v2/research/note/{note_id}",
        json={"user": world.admin.id, "title": "Body test", "content": "<p>Revised.</p>"},
        headers=api.headers,
    )
    assert changed.status_code == 200, changed.text
    gone = SyncedAttachment.objects.filter(team=team, file_name="model-4.xlsx").get()
    with psycopg.connect(sandbox.database_url, autocommit=True) as sandbox_db:
        sandbox_db.execute("DELETE FROM sandbox_api_attachment WHERE id = %s", [gone.bipsync_id])

    third = sync(conn)

    progress = {r["name"]: r for r in third.resource_progress()}
    assert NoteBody.objects.get(team=team, bipsync_id=note_id).content == "<p>Revised.</p>"
    assert progress["note_bodies"]["updated"] == 1
    assert progress["attachments"]["deleted"] == 1
    assert list(
        SyncedAttachment.objects.filter(team=team, deleted_at__isnull=False).values_list(
            "bipsync_id", flat=True
        )
    ) == [gone.bipsync_id]
    assert SyncedAttachment.objects.filter(team=team, deleted_at__isnull=True).count() == 4
    assert _row_versions(SyncedCategory, team) == categories


def test_a_grant_without_the_graphql_scopes_syncs_research_and_says_what_was_skipped(
    sandbox: Sandbox, world: SandboxWorld, team: Team
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 10, seed=7)
    conn = connection(team, world, ("rest_api:read",))

    run = sync(conn)

    assert ResearchDocument.objects.filter(team=team).count() == 10
    assert "Not synced, as the grant lacks their scopes: users (users:read);" in run.notes
    assert "attachments (research:read, attachments:read)." in run.notes
    assert {r["state"] for r in run.resource_progress()} == {"skipped"}
    assert not SyncedCategory.objects.exists()
    assert not SyncedUser.objects.exists()


def test_a_field_whose_scope_is_missing_is_left_out_and_the_rest_is_synced(
    sandbox: Sandbox, world: SandboxWorld, team: Team
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 5, seed=8)
    conn = connection(team, world, ("rest_api:read", "categories:read"))

    run = sync(conn)

    progress = {r["name"]: r["state"] for r in run.resource_progress()}
    assert progress["categories"] == "done"
    assert progress["classifications"] == "skipped"
    assert SyncedCategory.objects.filter(team=team).count() > 100
    assert not SyncedCategory.objects.exclude(classification_bid="").exists()
    assert SyncedCategory.objects.exclude(ticker="").exists()


def test_a_run_cut_into_slices_resumes_each_resource_at_its_checkpoint(
    sandbox: Sandbox, world: SandboxWorld, team: Team, settings: Settings
) -> None:
    settings.BIPSYNC_GRAPHQL_PAGE_SIZE = 60
    sandbox.generate_research(world.tenant, world.team_id, 5, seed=9)
    conn = connection(team, world, ("rest_api:read", "categories:read", "classifications:read"))
    slices: list[int] = []

    run = sync(conn, slices=slices, slice_now=True)

    listed = {n["id"] for n in graphql_nodes(conn, CATEGORIES, "categories")}
    pages = -(-len(listed) // 60)
    assert len(slices) >= pages
    progress = {r["name"]: r for r in run.resource_progress()}
    assert progress["categories"]["created"] == len(listed)
    assert progress["categories"]["seen"] == len(listed)
    assert set(SyncedCategory.objects.filter(team=team).values_list("bipsync_id", flat=True)) == (
        listed
    )


def test_a_50_mb_attachment_streams_from_bipsync_with_flat_memory(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User
) -> None:
    note_id = a_note_with_attachments(world, 0)
    size = 50 * 1024 * 1024
    made = sandbox.create_attachment(world.tenant, note_id, 'Q3 "final" model.xlsx', size)
    conn = connection(team, world, (*REST, *GRAPHQL_SCOPES))
    sync(conn)
    doc = ResearchDocument.objects.get(team=team, bipsync_id=note_id)
    link = reverse("sync:attachment", args=[team.slug, doc.pk, made["id"]])
    client = signed_in(bob)

    tracemalloc.start()
    response = client.get(link)
    digest, received = hashlib.sha256(), 0
    for chunk in response.streaming_content:  # type: ignore[attr-defined]
        digest.update(chunk)
        received += len(chunk)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert response.status_code == 200
    assert received == size
    assert digest.hexdigest() == made["sha256"]
    assert response["Content-Length"] == str(size)
    assert response["Content-Disposition"] == 'attachment; filename="Q3 \\"final\\" model.xlsx"'
    # The whole file is 50 MB; the streaming holds a few chunks of 64 KiB at a time.
    assert peak < 4 * 1024 * 1024, peak
