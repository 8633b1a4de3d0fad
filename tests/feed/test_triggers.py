"""The feed written by the triggers: a real sync against the sandbox over HTTP, then edits and
deletions; every change of a document is one entry, in the transaction of the change."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest
from django.db import connection, transaction
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Team
from bipsync_partner.feed.models import FeedEntry
from bipsync_partner.feed.reading import Change, current_cursor, decode_cursor, read_changes
from bipsync_partner.sync import engine, scheduling
from bipsync_partner.sync.client import api_for
from bipsync_partner.sync.models import ResearchDocument, SyncRun
from tests.feed.waiting import eventually
from tests.support.sandbox import Sandbox
from tests.sync.conftest import SyncWorld, database_url, machine_connection, make_sync_world

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(sandbox: Sandbox) -> Iterator[SyncWorld]:
    fresh = make_sync_world(sandbox)
    yield fresh
    fresh.world.http.close()


def sync(conn: object) -> SyncRun:
    requested = scheduling.request_sync(conn, publish=lambda run_id, delay: None)  # type: ignore[arg-type]
    engine.execute(requested.run.pk, api_factory=api_for)
    requested.run.refresh_from_db()
    assert requested.run.status == SyncRun.Status.SUCCEEDED, requested.run.error_message
    return requested.run


def served(team: Team) -> list[Change]:
    """Every entry of the team the feed serves now."""
    entries: list[Change] = []
    cursor = None
    while True:
        page = read_changes(team.pk, cursor, 100)
        entries += page.entries
        cursor = page.next_cursor
        if not page.has_more:
            return entries


def everything(team: Team) -> list[Change]:
    """Every committed entry of the team, once the feed serves them all."""
    stored = FeedEntry.objects.filter(team=team).count()
    return eventually(lambda: served(team), lambda found: len(found) >= stored)


def test_a_sync_writes_one_entry_per_created_changed_and_deleted_document(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 250, seed=3)
    conn = machine_connection(team, world)
    sync(conn)
    first = everything(team)
    assert Counter(e.action for e in first) == {"created": 250}
    assert {e.bipsync_id for e in first} == set(
        ResearchDocument.objects.filter(team=team).values_list("bipsync_id", flat=True)
    )
    # One transaction per page of 100: the page's entries share its transaction id.
    assert len({e.txid for e in first}) == 3

    mutated = sandbox.mutate_research(world.tenant, world.team_id, 0.2, seed=4)
    run = sync(conn)
    second = everything(team)[len(first) :]
    actions = Counter(e.action for e in second)
    assert actions["changed"] == run.updated_count == mutated["edited"]
    assert actions["deleted"] == run.deleted_count == mutated["deleted"]
    assert actions["created"] == run.created_count == mutated["created"]

    # A re-sync of nothing new writes nothing to the feed.
    sync(conn)
    assert len(everything(team)) == len(first) + len(second)


def test_an_update_that_leaves_the_content_alone_is_no_change(team: Team) -> None:
    doc = ResearchDocument.objects.create(
        team=team, tenant="acme", bipsync_id="a" * 24, content_hash="1"
    )
    doc.source_connection_id = None
    doc.changed_at = timezone.now()
    doc.save()
    doc.content_hash = "2"
    doc.save()
    doc.delete()
    assert [e.action for e in everything(team)] == ["created", "changed", "deleted"]


def test_a_rolled_back_change_leaves_no_entry(team: Team) -> None:
    def create_then_fail() -> None:
        with transaction.atomic():
            ResearchDocument.objects.create(
                team=team, tenant="acme", bipsync_id="b" * 24, content_hash="1"
            )
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        create_then_fail()
    assert FeedEntry.objects.filter(team=team).count() == 0


def test_a_change_is_not_served_until_every_older_transaction_has_ended(team: Team) -> None:
    """Two transactions interleaved: the later id commits first; the reader waits for both."""
    with psycopg.connect(database_url(), autocommit=False) as early:
        early.execute(
            "INSERT INTO sync_researchdocument (team_id, tenant, bipsync_id, content_hash, "
            "first_synced_at, changed_at, title, content_type_bid, author_bid, author_name, "
            "lookup_fields) VALUES (%s, 'acme', %s, '1', now(), now(), '', '', '', '', '{}')",
            [team.pk, "c" * 24],
        )
        ResearchDocument.objects.create(
            team=team, tenant="acme", bipsync_id="d" * 24, content_hash="1"
        )
        assert served(team) == []
        early.commit()
    assert [e.bipsync_id for e in everything(team)] == ["c" * 24, "d" * 24]


def test_the_current_cursor_is_past_the_newest_entry_and_a_made_up_cursor_is_refused(
    team: Team, other_team: Team
) -> None:
    assert decode_cursor(current_cursor(team.pk)) == (0, 0)
    ResearchDocument.objects.create(team=team, tenant="acme", bipsync_id="e" * 24, content_hash="1")
    cursor = current_cursor(team.pk)
    assert read_changes(team.pk, cursor, 10).entries == []
    assert read_changes(other_team.pk, None, 10).entries == []
    for junk in ("junk", cursor[:-2] + "xx", "MC0w", cursor.replace(".", ":")):
        with pytest.raises(ValueError, match="cursor"):
            read_changes(team.pk, junk, 10)


def test_a_team_deleted_takes_its_entries_along(team: Team) -> None:
    ResearchDocument.objects.create(team=team, tenant="acme", bipsync_id="f" * 24, content_hash="1")
    team.delete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM feed_feedentry")
        assert cursor.fetchone() == (0,)


def test_the_feed_orders_transaction_ids_as_numbers_not_as_text(team: Team) -> None:
    """A transaction id of more digits comes later (as text "10" sorts before "9")."""
    for txid, bipsync_id in ((10, "g" * 24), (9, "h" * 24)):
        FeedEntry.objects.create(
            team=team,
            resource="research",
            tenant="acme",
            bipsync_id=bipsync_id,
            action="created",
            row_id=1,
            txid=txid,
        )
    assert [e.txid for e in read_changes(team.pk, None, 10).entries] == [9, 10]
    assert decode_cursor(current_cursor(team.pk))[0] == 10
