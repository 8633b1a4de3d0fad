"""One row per Bipsync document per tenant of a team, whichever connections see it: visibility
per member, stale research of a connection that needs reconnecting, a disconnect removing what
only that connection saw, a newer edit kept against an older view, and the document page.

The team has the partner's service account (team-wide: it sees what the Bipsync team shared
with the partner app) and Bob's own user connection (as the sandbox's admin user: the shared
documents and that user's private notes). Syncs run through the engine against the sandbox over
real HTTP; the disconnect's removal runs on a real Celery worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.urls import reverse
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Membership, Team, User
from bipsync_partner.connections.models import Connection
from bipsync_partner.feed.reading import read_changes
from bipsync_partner.sync import engine, scheduling
from bipsync_partner.sync.client import api_for
from bipsync_partner.sync.exposure import documents_only_visible_through
from bipsync_partner.sync.models import (
    DocumentChange,
    DocumentSighting,
    ResearchDocument,
    SyncedField,
    SyncRun,
    TeamSyncSettings,
)
from tests.conftest import signed_in
from tests.feed.waiting import eventually
from tests.support.sandbox import Sandbox
from tests.sync.conftest import SyncWorld, Worker, make_sync_world, user_connection, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(sandbox: Sandbox) -> Iterator[SyncWorld]:
    fresh = make_sync_world(sandbox)
    yield fresh
    fresh.world.http.close()


@pytest.fixture
def carol(team: Team) -> User:
    user = User.objects.create_user("carol@example.com", "pw", name="Carol Member")
    team.add_member(user, Membership.Role.MEMBER)
    return user


def listed(world: SyncWorld, access_token: str) -> dict[str, dict[str, Any]]:
    """What a token sees of the research, read straight from the sandbox."""
    found: dict[str, dict[str, Any]] = {}
    offset = 0
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {access_token}"}) as http:
        while True:
            body = http.get(
                world.world.api_base + "/v1/research", params={"offset": offset, "limit": 100}
            ).json()
            found.update({item["id"]: item for item in body["results"]})
            offset += len(body["results"])
            if not body["results"] or offset >= body["total"]:
                return found


def sync(conn: Connection) -> SyncRun:
    run = scheduling.request_sync(conn, publish=lambda *_: None).run
    engine.execute(run.pk, api_factory=api_for)
    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    return run


@dataclass
class TwoViews:
    service: Connection
    bobs: Connection
    shared: dict[str, dict[str, Any]]  # what the service account sees
    bobs_view: dict[str, dict[str, Any]]  # what Bob's own connection sees

    @property
    def only_bob(self) -> set[str]:
        return self.bobs_view.keys() - self.shared.keys()


@pytest.fixture
def two_views(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team, bob: User
) -> TwoViews:
    sandbox.generate_research(
        world.tenant,
        world.team_id,
        60,
        seed=21,
        share_with=[world.world.service_app.client_id],
        private_fraction=0.3,
    )
    TeamSyncSettings.objects.create(team=team, sync_user_connections=True)
    issued = world.world.connect(world.world.service_app)
    service = Connection.objects.create(
        team=team,
        tenant=world.tenant,
        kind=Connection.Kind.SERVICE_ACCOUNT,
        scopes=" ".join(world.world.service_app.scopes),
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        access_expires_at=timezone.now() + timedelta(seconds=issued["expires_in"]),
    )
    bobs = user_connection(world, team, bob)
    views = TwoViews(
        service=service,
        bobs=bobs,
        shared=listed(world, issued["access_token"]),
        bobs_view=listed(world, bobs.access_token or ""),
    )
    assert views.only_bob, "the admin user has private notes the service account does not see"
    assert views.shared.keys() <= views.bobs_view.keys()
    return views


def research_url(team: Team) -> str:
    return reverse("sync:research", kwargs={"team_slug": team.slug})


def document_url(team: Team, doc: ResearchDocument) -> str:
    return reverse("sync:document", kwargs={"team_slug": team.slug, "document_id": doc.pk})


def shown(user: User, team: Team) -> tuple[set[str], int]:
    """The ids the research browser lists to ``user`` (every page) and the count it states."""
    client = signed_in(user)
    ids: set[str] = set()
    response = client.get(research_url(team))
    while True:
        assert response.status_code == 200
        ids |= {doc.bipsync_id for doc in response.context["page"].object_list}
        older = response.context["links"].get("next")
        if older is None:
            count = response.context["page"].count
            assert count.exact
            return ids, count.value
        response = client.get(research_url(team) + older)


def test_two_connections_over_one_tenant_keep_one_row_per_document_each_shown_to_whom_it_should(
    two_views: TwoViews, team: Team, alice: User, bob: User, carol: User
) -> None:
    first = sync(two_views.service)
    second = sync(two_views.bobs)

    assert first.created_count == len(two_views.shared)
    # The second connection wrote document rows only for what it alone sees; the rest are
    # sightings of rows already stored.
    assert (second.created_count, second.updated_count) == (len(two_views.only_bob), 0)
    everything = two_views.bobs_view.keys()
    assert ResearchDocument.objects.filter(team=team).count() == len(everything)
    assert DocumentSighting.objects.filter(connection=two_views.bobs).count() == len(everything)
    assert shown(bob, team) == (set(everything), len(everything))
    # The admin and another member see the team-wide research only, counted once.
    assert shown(alice, team) == (set(two_views.shared), len(two_views.shared))
    assert shown(carol, team) == (set(two_views.shared), len(two_views.shared))


def test_an_unchanged_resync_of_the_second_connection_writes_nothing(
    two_views: TwoViews, team: Team
) -> None:
    sync(two_views.service)
    sync(two_views.bobs)
    sightings = DocumentSighting.objects.count()

    again = sync(two_views.bobs)

    assert (again.created_count, again.updated_count, again.deleted_count) == (0, 0, 0)
    assert DocumentSighting.objects.count() == sightings
    assert not DocumentChange.objects.exists()


def test_a_connection_that_needs_reconnecting_keeps_its_research_marked_stale_with_a_link(
    two_views: TwoViews, team: Team, bob: User
) -> None:
    sync(two_views.service)
    sync(two_views.bobs)
    Connection.objects.filter(pk=two_views.bobs.pk).update(status=Connection.Status.NEEDS_RECONNECT)

    ids, _ = shown(bob, team)

    assert ids == set(two_views.bobs_view)  # nothing vanished
    response = signed_in(bob).get(research_url(team), {"page": "1"})
    rows = {doc.bipsync_id: doc for doc in response.context["page"].object_list}
    reconnect = reverse(
        "connections:detail", kwargs={"team_slug": team.slug, "connection_id": two_views.bobs.pk}
    )
    text = response.content.decode()
    for bid, doc in rows.items():
        # Stale only where the service account (which works) does not see it too.
        assert (doc.stale is not None) == (bid in two_views.only_bob), bid
    assert any(doc.stale for doc in rows.values())
    assert "Stale since" in text
    assert f'href="{reconnect}"' in text
    assert f"reconnect {two_views.bobs}" in text
    private = ResearchDocument.objects.get(team=team, bipsync_id=sorted(two_views.only_bob)[0])
    page = signed_in(bob).get(document_url(team, private))
    assert page.status_code == 200
    assert "Stale since" in page.content.decode()


def test_disconnect_removes_only_what_that_connection_alone_saw(
    two_views: TwoViews, celery_worker: Worker, team: Team, alice: User, bob: User
) -> None:
    sync(two_views.service)
    sync(two_views.bobs)
    assert documents_only_visible_through(two_views.bobs) == len(two_views.only_bob)
    assert documents_only_visible_through(two_views.service) == 0

    response = signed_in(bob).post(
        reverse(
            "connections:disconnect",
            kwargs={"team_slug": team.slug, "connection_id": two_views.bobs.pk},
        )
    )
    assert response.status_code == 302

    # Hidden at once (a disconnected connection is no source), removed by the worker.
    assert shown(bob, team)[0] == set(two_views.shared)
    wait_for(
        lambda: not DocumentSighting.objects.filter(connection=two_views.bobs).exists(),
        timeout=60,
        what="the disconnected connection's sightings to be removed",
    )
    stored = set(ResearchDocument.objects.filter(team=team).values_list("bipsync_id", flat=True))
    assert stored == set(two_views.shared)
    assert shown(alice, team) == (set(two_views.shared), len(two_views.shared))
    assert DocumentSighting.objects.filter(connection=two_views.service).count() == len(
        two_views.shared
    )


def _page_of(run: SyncRun, items: list[dict[str, Any]]) -> engine.Step:
    return engine.Step(
        offset=0,
        items=items,
        total=len(items),
        next_offset=len(items),
        anchor=items[-1]["id"],
        unstable=False,
    )


def test_an_older_view_from_a_second_connection_does_not_undo_a_newer_edit(
    two_views: TwoViews, team: Team
) -> None:
    sync(two_views.service)
    sync(two_views.bobs)
    bid = sorted(two_views.shared)[0]
    item = two_views.shared[bid]
    doc = ResearchDocument.objects.get(team=team, bipsync_id=bid)
    assert doc.bipsync_modified is not None
    # Bipsync's list is read by each connection at its own moment: a page read by one
    # connection before an edit can be stored after the other connection stored the edit.
    # The two views are given as pages here, as the sandbox serves one current state to both.
    later = (doc.bipsync_modified + timedelta(minutes=5)).isoformat()
    newer = {**item, "title": "Edited title", "modified": later}
    service_run = scheduling.request_sync(two_views.service, publish=lambda *_: None).run
    written = engine.store_page(service_run, _page_of(service_run, [newer]))
    assert written.updated == 1

    bobs_run = scheduling.request_sync(two_views.bobs, publish=lambda *_: None).run
    older = engine.store_page(bobs_run, _page_of(bobs_run, [item]))

    assert older.updated == 0
    doc.refresh_from_db()
    assert doc.title == "Edited title"
    assert doc.source_connection_id == two_views.service.pk
    (change,) = DocumentChange.objects.filter(document=doc)
    assert change.connection_id == two_views.service.pk
    assert change.changes["title"] == [item["title"], "Edited title"]


def test_the_document_page_shows_fields_author_history_and_the_bipsync_link_to_whom_may_see_it(
    two_views: TwoViews, team: Team, alice: User, bob: User, carol: User, charlie: User
) -> None:
    sync(two_views.service)
    sync(two_views.bobs)
    bid = sorted(two_views.shared)[0]
    item = two_views.shared[bid]
    doc = ResearchDocument.objects.get(team=team, bipsync_id=bid)
    DocumentChange.objects.create(
        document=doc,
        connection=two_views.service,
        changes={"title": ["Draft title", doc.title], "fields": {"sector": ["a", "b"]}},
    )

    response = signed_in(carol).get(document_url(team, doc))

    assert response.status_code == 200
    text = response.content.decode()
    assert doc.title in text
    bipsync = f"{two_views.service.tenant}/web/research/{bid}"
    assert bipsync in text
    assert item["user"] in text or doc.author_name in text
    for key in item["fields"]:  # by the name Bipsync's field list gives it
        field = SyncedField.objects.filter(team=team, api_identifier=key).first()
        assert (field.name if field else key) in text, key
    assert "Draft title" in text
    assert "field sector: a → b" in text
    assert str(two_views.service) in text
    listing = signed_in(carol).get(research_url(team)).content.decode()
    assert document_url(team, doc) in listing
    assert bipsync in listing

    private = ResearchDocument.objects.get(team=team, bipsync_id=sorted(two_views.only_bob)[0])
    assert signed_in(bob).get(document_url(team, private)).status_code == 200
    assert signed_in(alice).get(document_url(team, private)).status_code == 404
    assert signed_in(carol).get(document_url(team, private)).status_code == 404
    assert signed_in(charlie).get(document_url(team, doc)).status_code == 404
    other = reverse("sync:document", kwargs={"team_slug": "globex", "document_id": doc.pk})
    assert signed_in(charlie).get(other).status_code == 404


def test_a_document_is_deleted_when_the_last_connection_that_saw_it_no_longer_does(
    two_views: TwoViews, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    sync(two_views.service)
    sync(two_views.bobs)
    sandbox.mutate_research(
        world.tenant,
        world.team_id,
        0.1,
        seed=22,
        share_with=[world.world.service_app.client_id],
    )
    now_bob = listed(world, two_views.bobs.access_token or "")
    gone_shared = two_views.shared.keys() - now_bob.keys()
    assert gone_shared, "the mutation deleted some shared documents"

    bobs_run = sync(two_views.bobs)

    # Bob's connection no longer sees them: its sightings went, but the service account's
    # complete scan has not said so yet, so the documents stay.
    assert bobs_run.deleted_count == len(two_views.bobs_view.keys() - now_bob.keys())
    still = ResearchDocument.objects.filter(team=team, bipsync_id__in=gone_shared)
    assert still.count() == len(gone_shared)
    assert not still.filter(deleted_at__isnull=False).exists()
    assert not DocumentSighting.objects.filter(
        connection=two_views.bobs, document__in=still
    ).exists()

    sync(two_views.service)

    assert still.filter(deleted_at__isnull=False).count() == len(gone_shared)
    assert not DocumentSighting.objects.filter(document__in=still).exists()
    deleted_marks = DocumentChange.objects.filter(document__in=still, changes={"deleted": True})
    assert deleted_marks.count() == len(gone_shared)


def _team_feed(team: Team, alice: User) -> Callable[[], list[tuple[str, int]]]:
    """A reader of the research entries of the team's change feed, as an API key of the team
    reads them (the feed serves a change once every older transaction on the server has ended,
    so the tests wait for what they expect: ``eventually``)."""
    from bipsync_partner.api.keys import create_key
    from tests.api.conftest import key_client

    client = key_client(create_key(team, "Feed reader", ["read"], alice))

    def read() -> list[tuple[str, int]]:
        entries: list[tuple[str, int]] = []
        after: str | None = None
        while True:
            body = client.get("/api/v1/changes", {"after": after} if after else {}).json()
            entries += [
                (e["action"], e["row_id"]) for e in body["entries"] if e["resource"] == "research"
            ]
            after = body["next_cursor"]
            if not body["has_more"]:
                return entries

    return read


def _of(entries: list[tuple[str, int]], action: str) -> set[int]:
    return {pk for done, pk in entries if done == action}


def test_the_teams_feed_tells_when_a_document_becomes_the_teams_and_when_it_stops_being(
    two_views: TwoViews, celery_worker: Worker, team: Team, alice: User
) -> None:
    read = _team_feed(team, alice)
    sync(two_views.bobs)  # Bob's own connection first: the team as a whole reads none of it
    pks = dict(ResearchDocument.objects.filter(team=team).values_list("bipsync_id", "pk"))
    shared = {pks[bid] for bid in two_views.shared}
    # Bob's documents are in the feed (his own connection's first sync) but not the team's.
    served = eventually(
        lambda: read_changes(team.pk, None, 10_000).entries,
        lambda found: len(found) >= len(pks),
    )
    assert len(served) >= len(pks)
    assert read() == []

    sync(two_views.service)  # the service account sees the shared ones too, and changes no row
    first = eventually(read, lambda found: _of(found, "changed") >= shared)
    assert _of(first, "changed") == shared
    assert {pk for _, pk in first} == shared  # nothing of what Bob alone sees

    disconnect_url = reverse(
        "connections:disconnect",
        kwargs={"team_slug": team.slug, "connection_id": two_views.service.pk},
    )
    assert signed_in(alice).post(disconnect_url).status_code == 302
    wait_for(
        lambda: not DocumentSighting.objects.filter(connection=two_views.service).exists(),
        timeout=60,
        what="the disconnected service account's sightings to be removed",
    )
    # Bob still sees them, so they stay stored, but the team's keys must drop them.
    assert set(ResearchDocument.objects.filter(team=team).values_list("pk", flat=True)) >= shared
    after = eventually(read, lambda found: _of(found, "deleted") >= shared)
    assert _of(after, "deleted") == shared


def test_a_team_wide_first_sync_writes_one_entry_per_document(
    two_views: TwoViews, team: Team, alice: User
) -> None:
    read = _team_feed(team, alice)
    sync(two_views.service)
    stored = set(ResearchDocument.objects.filter(team=team).values_list("pk", flat=True))
    entries = eventually(read, lambda found: _of(found, "created") >= stored)
    assert sorted(entries) == sorted(("created", pk) for pk in stored)
