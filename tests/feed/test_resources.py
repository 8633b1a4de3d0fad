"""The feed of the resources read through GraphQL (users, categories, note bodies, attachments
and the rest): a real sync against the sandbox over HTTP, a re-sync, an edit and a deletion;
each created, changed or deleted row is one entry of its resource, and an unchanged row none."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest
from pytest_django.fixtures import Settings

from accounts.models import Team
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
from bipsync_partner.sync.resources import ALL
from tests.feed.test_triggers import everything
from tests.sandbox.research_api import Api, team_token
from tests.support.sandbox import GRAPHQL_SCOPES, Sandbox, SandboxWorld, make_world
from tests.sync.conftest import partner_settings_for
from tests.sync.test_resources import REST, a_note_with_attachments, connection, sync

pytestmark = pytest.mark.django_db(transaction=True)

MODELS: dict[str, type[TenantRow]] = {
    "users": SyncedUser,
    "classifications": SyncedClassification,
    "categories": SyncedCategory,
    "contacts": SyncedContact,
    "projects": SyncedProject,
    "note_bodies": NoteBody,
    "attachments": SyncedAttachment,
}


@pytest.fixture
def world(sandbox: Sandbox, settings: Settings) -> Iterator[SandboxWorld]:
    fresh = make_world(sandbox)
    for name, value in partner_settings_for(sandbox, fresh).items():
        setattr(settings, name, value)
    yield fresh
    fresh.http.close()


def test_every_synced_resource_is_in_the_feed() -> None:
    assert set(MODELS) == {r.name for r in ALL}


def test_a_resource_sync_writes_one_entry_per_created_changed_and_deleted_row(
    sandbox: Sandbox, world: SandboxWorld, team: Team
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 5, seed=11)
    note_id = a_note_with_attachments(world, 5)
    conn = connection(team, world, (*REST, *GRAPHQL_SCOPES))
    sync(conn)

    served = everything(team)
    first = [e for e in served if e.resource != "research"]
    for name, model in MODELS.items():
        mine = [e for e in first if e.resource == name]
        rows = dict(model._default_manager.filter(team=team).values_list("pk", "bipsync_id"))
        assert Counter(e.action for e in mine) == ({"created": len(rows)} if rows else {}), name
        assert {e.row_id: e.bipsync_id for e in mine} == rows, name
        assert {e.tenant for e in mine} <= {world.tenant}
    assert {e.resource for e in first} >= {"users", "categories", "note_bodies", "attachments"}

    # Nothing changed at Bipsync: the re-sync writes no entry.
    stored = FeedEntry.objects.filter(team=team).count()
    sync(conn)
    assert FeedEntry.objects.filter(team=team).count() == stored

    api = Api(world, team_token(world, " ".join(REST)))
    edited = api.http.put(
        f"{world.api_base}/v2/research/note/{note_id}",
        json={"user": world.admin.id, "title": "Body test", "content": "<p>Revised.</p>"},
        headers=api.headers,
    )
    assert edited.status_code == 200, edited.text
    # One attachment of five: within SYNC_CONFIRM_DELETIONS_PERCENT, so deleted in one scan.
    gone = SyncedAttachment.objects.filter(team=team, file_name="model-4.xlsx").get()
    with psycopg.connect(sandbox.database_url, autocommit=True) as sandbox_db:
        sandbox_db.execute("DELETE FROM sandbox_api_attachment WHERE id = %s", [gone.bipsync_id])
    sync(conn)

    later = [e for e in everything(team)[len(served) :] if e.resource != "research"]
    body = NoteBody.objects.get(team=team, bipsync_id=note_id)
    assert sorted((e.resource, e.action, e.row_id) for e in later) == [
        ("attachments", "deleted", gone.pk),
        ("note_bodies", "changed", body.pk),
    ]
