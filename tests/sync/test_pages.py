"""The sync pages: history, live progress, "Sync now", the stale flag, the research browser."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, Team, User
from bipsync_partner.connections.models import Connection
from bipsync_partner.sync.models import (
    DocumentSighting,
    ResearchDocument,
    SyncedContentType,
    SyncRun,
    SyncSchedule,
    TeamSyncSettings,
)
from tests.conftest import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def machine(team: Team) -> Connection:
    return Connection.objects.create(
        team=team,
        tenant="acme",
        kind=Connection.Kind.CLIENT_CREDENTIALS,
        client_id="customer-export",
        client_secret="not-a-real-secret",
        bipsync_team_id="5f0c9a1b2c3d4e5f60718293",
        scopes="rest_api:read",
    )


def url(name: str, team: Team, **kwargs: object) -> str:
    return reverse(f"sync:{name}", kwargs={"team_slug": team.slug, **kwargs})


def test_an_admin_queues_one_sync_with_sync_now(
    team: Team, alice: User, machine: Connection
) -> None:
    client = signed_in(alice)
    response = client.post(url("now", team, connection_id=machine.pk), follow=True)
    assert response.status_code == 200
    assert b"The sync is queued" in response.content
    run = SyncRun.objects.get(connection=machine)
    assert run.trigger == SyncRun.Trigger.MANUAL
    assert run.requested_by == alice
    assert run.status == SyncRun.Status.QUEUED

    again = client.post(url("now", team, connection_id=machine.pk), follow=True)
    assert b"already queued or running" in again.content
    assert SyncRun.objects.filter(connection=machine).count() == 1


def test_sync_now_is_for_admins_and_invisible_to_outsiders(
    team: Team, bob: User, charlie: User, machine: Connection
) -> None:
    assert signed_in(bob).post(url("now", team, connection_id=machine.pk)).status_code == 403
    assert signed_in(charlie).post(url("now", team, connection_id=machine.pk)).status_code == 404
    assert signed_in(charlie).get(url("history", team, connection_id=machine.pk)).status_code == 404
    assert Client().get(url("overview", team)).status_code == 302  # to the sign-in page
    assert not SyncRun.objects.exists()


def test_sync_now_needs_a_post(team: Team, alice: User, machine: Connection) -> None:
    assert signed_in(alice).get(url("now", team, connection_id=machine.pk)).status_code == 405


def test_the_history_lists_runs_with_counts_status_and_the_error_sentence(
    team: Team, bob: User, machine: Connection
) -> None:
    now = timezone.now()
    SyncRun.objects.create(
        connection=machine,
        status=SyncRun.Status.SUCCEEDED,
        queued_at=now - timedelta(hours=2),
        started_at=now - timedelta(hours=2),
        finished_at=now - timedelta(hours=2) + timedelta(seconds=42),
        seen_count=3000,
        total_reported=3000,
        created_count=2987,
        updated_count=0,
        unchanged_count=13,
        deleted_count=4,
        pages=31,
    )
    SyncRun.objects.create(
        connection=machine,
        status=SyncRun.Status.FAILED,
        finished_at=now,
        error_code="ip_not_allow_listed",
        error_message="Bipsync refused the call because this server's IP address is not "
        "allow-listed by the Bipsync tenant.",
    )

    page = signed_in(bob).get(url("history", team, connection_id=machine.pk))

    assert page.status_code == 200
    text = page.content.decode()
    assert "3000 of 3000" in text
    assert "2987" in text
    assert "not allow-listed by the Bipsync tenant" in text
    assert 'class="status failed"' in text
    assert "Sync now" not in text  # bob is a member


def test_a_running_sync_shows_documents_so_far_of_the_total_with_and_without_script(
    team: Team, alice: User, charlie: User, machine: Connection
) -> None:
    run = SyncRun.objects.create(
        connection=machine,
        status=SyncRun.Status.RUNNING,
        started_at=timezone.now(),
        seen_count=1200,
        total_reported=3000,
        pages=12,
    )

    page = signed_in(alice).get(url("history", team, connection_id=machine.pk)).content.decode()

    assert re.search(r'<progress id="sync-progress-bar" value="1200" max="3000">', page)
    assert "1200 documents so far of 3000" in page
    assert "js/sync-progress.js" in page
    progress = signed_in(alice).get(url("progress", team, run_id=run.pk))
    assert progress["Cache-Control"] == "no-store"
    assert progress.json()["seen"] == 1200
    assert progress.json()["total"] == 3000
    assert progress.json()["finished"] is False
    assert signed_in(charlie).get(url("progress", team, run_id=run.pk)).status_code == 404


def test_a_connection_without_success_for_three_periods_is_flagged_stale(
    team: Team, alice: User, machine: Connection
) -> None:
    schedule = SyncSchedule.objects.create(
        connection=machine,
        interval_seconds=3600,
        last_success_at=timezone.now() - timedelta(hours=3, minutes=5),
    )
    fresh = SyncSchedule.objects.create(
        connection=Connection.objects.create(
            team=team,
            tenant="acme-two",
            kind=Connection.Kind.CLIENT_CREDENTIALS,
            client_id="other-export",
            bipsync_team_id="5f0c9a1b2c3d4e5f60718294",
        ),
        interval_seconds=3600,
        last_success_at=timezone.now() - timedelta(hours=2),
    )
    assert schedule.is_stale()
    assert not fresh.is_stale()
    assert list(SyncSchedule.objects.stale()) == [schedule]

    overview = signed_in(alice).get(url("overview", team)).content.decode()
    assert overview.count('class="status stale"') == 1
    history = signed_in(alice).get(url("history", team, connection_id=machine.pk))
    assert b"No successful sync within three schedule periods" in history.content

    staff = User.objects.create_superuser("ops@example.com", "pw-ops-123456")
    admin_page = signed_in(staff).get(reverse("admin:sync_syncschedule_changelist") + "?stale=yes")
    assert admin_page.status_code == 200
    assert admin_page.context["cl"].result_count == 1


def test_an_admin_changes_the_schedule_and_bad_input_is_a_message(
    team: Team, alice: User, machine: Connection
) -> None:
    client = signed_in(alice)
    client.post(
        url("schedule", team, connection_id=machine.pk),
        {"enabled": "on", "interval_minutes": "30"},
    )
    schedule = SyncSchedule.objects.get(connection=machine)
    assert schedule.interval_seconds == 1800
    assert schedule.enabled

    response = client.post(
        url("schedule", team, connection_id=machine.pk),
        {"enabled": "on", "interval_minutes": "one hour"},
        follow=True,
    )
    assert response.status_code == 200
    assert b"Enter a whole number" in response.content
    assert SyncSchedule.objects.get(connection=machine).interval_seconds == 1800


def test_the_team_setting_lets_members_own_connections_sync(team: Team, alice: User) -> None:
    signed_in(alice).post(url("team_settings", team), {"sync_user_connections": "on"})
    assert TeamSyncSettings.objects.get(team=team).sync_user_connections


def _document(conn: Connection, n: int, **fields: object) -> ResearchDocument:
    """Document ``n`` of the connection's tenant, seen by the connection (a live one)."""
    values: dict[str, object] = {
        "source_connection": conn,
        "title": f"Document {n}",
        "content_type_bid": "a" * 24,
        "author_bid": "b" * 24,
        "content_hash": "0" * 64,
        "bipsync_modified": timezone.now() - timedelta(minutes=n),
    }
    values.update(fields)
    doc, _ = ResearchDocument.objects.get_or_create(
        team=conn.team, tenant=conn.tenant, bipsync_id=f"{n:024x}", defaults=values
    )
    if doc.deleted_at is None:
        DocumentSighting.objects.create(document=doc, connection=conn)
    return doc


def test_members_browse_research_by_title_content_type_and_author(
    team: Team, bob: User, machine: Connection
) -> None:
    SyncedContentType.objects.create(
        connection=machine,
        team=team,
        tenant="acme",
        bipsync_id="a" * 24,
        name="note",
        display_name="Note",
        content_hash="x",
    )
    SyncedContentType.objects.create(
        connection=machine,
        team=team,
        tenant="acme",
        bipsync_id="c" * 24,
        name="meeting",
        display_name="Meeting",
        content_hash="y",
    )
    _document(machine, 1, title="Acme Q3 earnings preview")
    _document(machine, 2, title="Globex site visit", content_type_bid="c" * 24)
    _document(machine, 3, title="Acme management meeting", content_type_bid="c" * 24)
    _document(machine, 4, title="Acme channel checks", author_bid="d" * 24)
    _document(machine, 5, title="Acme old note", deleted_at=timezone.now())
    client = signed_in(bob)

    def titles(**query: str) -> list[str]:
        response = client.get(url("research", team), query)
        assert response.status_code == 200
        return [doc.title for doc in response.context["page"].object_list]

    assert titles() == [
        "Acme Q3 earnings preview",
        "Globex site visit",
        "Acme management meeting",
        "Acme channel checks",
    ]
    assert titles(q="acme") == [
        "Acme Q3 earnings preview",
        "Acme management meeting",
        "Acme channel checks",
    ]
    assert titles(q="acme", content_type="c" * 24) == ["Acme management meeting"]
    assert titles(author="d" * 24) == ["Acme channel checks"]
    page = client.get(url("research", team), {"content_type": "not-a-type"})
    assert page.status_code == 400  # an unknown choice is a form error, not a 500
    assert b"Meeting" in page.content


def test_the_research_browser_names_authors_it_can_and_shows_the_rest_by_id(
    team: Team, alice: User, bob: User, machine: Connection
) -> None:
    # Bob connected his own Bipsync account: the token response named him (subject_name).
    Connection.objects.create(
        team=team,
        user=bob,
        tenant="acme",
        kind=Connection.Kind.USER,
        subject_id="b" * 24,
        subject_name="Bob at Acme",
    )
    _document(machine, 1, title="By Bob")  # author_bid "b" * 24, no name from the API
    _document(machine, 2, title="Named by the API", author_bid="e" * 24, author_name="Erin E")
    _document(machine, 3, title="Also Erin", author_bid="e" * 24, author_name="Erin E")
    _document(machine, 4, title="Namesake", author_bid="f" * 24, author_name="Erin E")
    _document(machine, 5, title="Stranger", author_bid="9" * 24)

    response = signed_in(alice).get(url("research", team))

    labels = {doc.title: doc.author_label for doc in response.context["page"].object_list}
    assert labels == {
        "By Bob": "Bob at Acme",
        "Named by the API": "Erin E (…eeeeee)",
        "Also Erin": "Erin E (…eeeeee)",
        "Namesake": "Erin E (…ffffff)",
        "Stranger": "9" * 24,
    }
    choices = dict(response.context["form"].fields["author"].choices)
    assert choices["b" * 24] == "Bob at Acme"
    assert choices["9" * 24] == "9" * 24
    assert b"Bob at Acme" in response.content
    by_bob = signed_in(alice).get(url("research", team), {"author": "b" * 24})
    assert [doc.title for doc in by_bob.context["page"].object_list] == ["By Bob"]


def test_the_research_browser_pages_through_many_documents(
    team: Team, bob: User, machine: Connection
) -> None:
    for n in range(1, 121):
        _document(machine, n)
    client = signed_in(bob)
    first = client.get(url("research", team), {"q": "Document"})
    assert first.context["page"].numbered_pages == 3
    assert b"q=Document&amp;page=2" in first.content
    last = client.get(url("research", team), {"q": "Document", "page": "3"})
    assert len(last.context["page"].object_list) == 20
    assert client.get(url("research", team), {"page": "nonsense"}).status_code == 400


def test_research_read_through_a_members_own_connection_is_shown_to_that_member_only(
    team: Team, alice: User, bob: User
) -> None:
    TeamSyncSettings.objects.create(team=team, sync_user_connections=True)
    carol = User.objects.create_user("carol@example.com", "pw")
    team.add_member(carol, Membership.Role.MEMBER)
    mine = Connection.objects.create(team=team, user=bob, tenant="acme", kind=Connection.Kind.USER)
    _document(mine, 1, title="Bob's private note")

    def visible(user: User) -> list[str]:
        response = signed_in(user).get(url("research", team))
        return [doc.title for doc in response.context["page"].object_list]

    assert visible(bob) == ["Bob's private note"]
    assert visible(carol) == []
    assert visible(alice) == []  # admins manage the connection, not the person's research


def test_the_research_filter_offers_only_content_types_and_authors_the_viewer_may_see(
    team: Team, alice: User, bob: User, charlie: User, machine: Connection
) -> None:
    TeamSyncSettings.objects.create(team=team, sync_user_connections=True)
    bobs = Connection.objects.create(team=team, user=bob, tenant="acme", kind=Connection.Kind.USER)
    for conn, bid, name in ((machine, "a" * 24, "Note"), (bobs, "c" * 24, "Bob's private type")):
        SyncedContentType.objects.create(
            connection=conn,
            team=team,
            tenant="acme",
            bipsync_id=bid,
            name=name,
            display_name=name,
            content_hash="x",
        )
    _document(machine, 1, title="Team note", author_bid="d" * 24, author_name="Dana")
    _document(
        bobs,
        2,
        title="Bob's private note",
        content_type_bid="c" * 24,
        author_bid="e" * 24,
        author_name="Eve Private",
    )

    def choices(user: User) -> tuple[dict[str, str], dict[str, str]]:
        response = signed_in(user).get(url("research", team))
        assert response.status_code == 200
        fields = response.context["form"].fields
        return dict(fields["content_type"].choices), dict(fields["author"].choices)

    types, authors = choices(alice)  # the admin manages Bob's connection, not his research
    assert types == {"": "Any", "a" * 24: "Note"}
    assert authors == {"": "Anyone", "d" * 24: "Dana"}
    types, authors = choices(bob)
    assert types == {"": "Any", "a" * 24: "Note", "c" * 24: "Bob's private type"}
    assert authors == {"": "Anyone", "d" * 24: "Dana", "e" * 24: "Eve Private"}
    page = signed_in(alice).get(url("research", team))
    assert b"Bob&#x27;s private type" not in page.content
    assert b"Eve Private" not in page.content
    # Asking for the hidden type by id is an unknown choice: nothing is filtered by it.
    asked = signed_in(alice).get(url("research", team), {"content_type": "c" * 24})
    assert asked.status_code == 400
    assert "content_type" in asked.context["form"].errors
    assert signed_in(charlie).get(url("research", team)).status_code == 404


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.5181, "0.5 s"), (59.94, "59.9 s"), (125, "2 min 05 s"), (3720, "1 h 02 min")],
)
def test_a_runs_duration_reads_like_a_person_would_say_it(seconds: float, text: str) -> None:
    started = timezone.now()
    run = SyncRun(started_at=started, finished_at=started + timedelta(seconds=seconds))
    assert run.duration_text == text
    assert SyncRun().duration_text == ""
