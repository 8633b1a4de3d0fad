"""What the pages say about syncing: one sentence decides whether and when a connection syncs
(so two texts never contradict each other), schedules are spoken of in minutes, and a
disconnected connection's sync history stays readable."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Team, User
from bipsync_partner.connections.models import Connection
from bipsync_partner.sync.models import SyncRun, SyncSchedule, TeamSyncSettings
from bipsync_partner.sync.status import sync_sentence
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


@pytest.fixture
def own(team: Team, bob: User) -> Connection:
    return Connection.objects.create(
        team=team, user=bob, tenant="acme", kind=Connection.Kind.USER, scopes="rest_api:read"
    )


def history(team: Team, connection: Connection) -> str:
    return reverse("sync:history", kwargs={"team_slug": team.slug, "connection_id": connection.pk})


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def test_a_member_s_connection_that_does_not_sync_shows_no_schedule_beside_it(
    team: Team, alice: User, own: Connection
) -> None:
    # A schedule left from when the team allowed members' connections to sync.
    SyncSchedule.objects.create(connection=own, interval_seconds=3600)

    page = text_of(signed_in(alice).get(history(team, own)).content.decode())

    assert "Does not sync: members' own connections are not enabled for syncing" in page
    assert "Syncs every" not in page
    assert "next" not in page.split("Does not sync")[1][:200]


def test_schedules_are_spoken_of_in_minutes_on_the_history_and_the_overview(
    team: Team, alice: User, machine: Connection
) -> None:
    due = timezone.now() + timedelta(minutes=30)
    SyncSchedule.objects.create(connection=machine, interval_seconds=3600, next_due_at=due)
    client = signed_in(alice)

    page = text_of(client.get(history(team, machine)).content.decode())
    overview = text_of(client.get(reverse("sync:overview", args=[team.slug])).content.decode())

    expected = f"Syncs every 60 minutes; next {due:%Y-%m-%d %H:%M} UTC."
    assert expected in page
    assert expected in overview
    assert "seconds" not in page
    assert "Every (minutes)" in page  # the form asks in the same unit


def test_the_connections_list_says_the_same_sentence_as_the_sync_pages(
    team: Team, alice: User, machine: Connection
) -> None:
    SyncSchedule.objects.create(connection=machine, enabled=False)

    listing = text_of(signed_in(alice).get(f"/teams/{team.slug}/connections/").content.decode())
    page = text_of(signed_in(alice).get(history(team, machine)).content.decode())

    sentence = "The schedule is off: it syncs only when an admin clicks Sync now."
    assert sentence in listing
    assert sentence in page


@pytest.mark.parametrize(
    ("status", "syncs", "expected"),
    [
        (Connection.Status.DISCONNECTED, False, "Disconnected: it no longer syncs."),
        (Connection.Status.NEEDS_RECONNECT, False, "Does not sync until it is reconnected."),
        (Connection.Status.ACTIVE, True, "Syncs every 15 minutes; next due now"),
        (Connection.Status.FAILING, True, "Syncs every 15 minutes; next due now"),
    ],
)
def test_one_sentence_decides_whether_and_when_a_connection_syncs(
    machine: Connection, status: str, syncs: bool, expected: str
) -> None:
    machine.status = status
    schedule = SyncSchedule(
        connection=machine, interval_seconds=900, next_due_at=timezone.now() - timedelta(minutes=1)
    )

    assert sync_sentence(machine, schedule, syncs=syncs).startswith(expected)


def test_a_disconnected_connection_s_sync_history_stays_readable_and_read_only(
    team: Team, alice: User, machine: Connection
) -> None:
    run = SyncRun.objects.create(
        connection=machine,
        status=SyncRun.Status.SUCCEEDED,
        started_at=timezone.now() - timedelta(hours=1),
        finished_at=timezone.now() - timedelta(minutes=59),
        created_count=17,
    )
    SyncSchedule.objects.create(connection=machine)
    machine.status = Connection.Status.DISCONNECTED
    machine.save(update_fields=["status"])
    client = signed_in(alice)

    response = client.get(history(team, machine))

    assert response.status_code == 200
    page = response.content.decode()
    assert f'data-run="{run.pk}"' in page
    assert "This page is read-only" in page
    assert "Sync now" not in page
    assert "Save schedule" not in page
    kwargs = {"team_slug": team.slug, "connection_id": machine.pk}
    assert client.post(reverse("sync:now", kwargs=kwargs)).status_code == 404
    assert (
        client.post(reverse("sync:schedule", kwargs=kwargs), {"interval_minutes": "30"}).status_code
        == 404
    )
    overview = client.get(reverse("sync:overview", args=[team.slug])).content.decode()
    assert history(team, machine) in overview
    assert not SyncRun.objects.exclude(pk=run.pk).exists()


def test_an_outsider_still_gets_404_for_a_disconnected_connection_s_history(
    team: Team, charlie: User, machine: Connection
) -> None:
    machine.status = Connection.Status.DISCONNECTED
    machine.save(update_fields=["status"])
    assert signed_in(charlie).get(history(team, machine)).status_code == 404


def test_sync_now_on_a_connection_that_may_not_sync_answers_with_the_same_sentence(
    team: Team, alice: User, bob: User, own: Connection
) -> None:
    TeamSyncSettings.objects.create(team=team, sync_user_connections=False)
    own.user = alice
    own.save(update_fields=["user"])
    kwargs = {"team_slug": team.slug, "connection_id": own.pk}

    response = signed_in(alice).post(reverse("sync:now", kwargs=kwargs), follow=True)

    page = text_of(response.content.decode())
    assert "Does not sync: members' own connections are not enabled for syncing" in page
    assert not SyncRun.objects.exists()
