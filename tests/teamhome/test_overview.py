"""The team overview (/teams/<team>/): where a signed-in user lands, problems first with the action
that fixes each, the syncs and the research at a glance, Connect Bipsync when nothing is
connected."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Team, User
from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.pending import PendingAuthorizationRecord, digest
from bipsync_partner.sync.models import DocumentSighting, ResearchDocument, SyncRun, SyncSchedule
from tests.conftest import PASSWORD, signed_in

pytestmark = pytest.mark.django_db


def machine(team: Team, tenant: str = "acme", **fields: object) -> Connection:
    values: dict[str, object] = {
        "team": team,
        "tenant": tenant,
        "kind": Connection.Kind.CLIENT_CREDENTIALS,
        "client_id": "customer-export",
        "client_secret": "not-a-real-secret",
        "bipsync_team_id": "5f0c9a1b2c3d4e5f60718293",
        "scopes": "rest_api:read",
    }
    values.update(fields)
    return Connection.objects.create(**values)


def service_account(team: Team, tenant: str = "acme", **fields: object) -> Connection:
    values: dict[str, object] = {
        "team": team,
        "tenant": tenant,
        "kind": Connection.Kind.SERVICE_ACCOUNT,
    }
    values.update(fields)
    return Connection.objects.create(**values)


def document(conn: Connection, n: int, **fields: object) -> ResearchDocument:
    values: dict[str, object] = {
        "source_connection": conn,
        "team_id": conn.team_id,
        "tenant": conn.tenant,
        "bipsync_id": f"{n:024x}",
        "content_hash": "h",
        "title": f"Note {n}",
    }
    values.update(fields)
    doc = ResearchDocument.objects.create(**values)
    if doc.deleted_at is None:
        DocumentSighting.objects.create(document=doc, connection=conn)
    return doc


def cards(html: str) -> list[str]:
    """The data-problem of each connection card, in page order."""
    return [part.split('"', 1)[0] for part in html.split('data-problem="')[1:]]


def test_a_signed_in_user_lands_on_the_team_overview(alice: User) -> None:
    client = Client()
    client.post("/accounts/login/", {"username": alice.email, "password": PASSWORD})
    response = client.get("/", follow=True)
    assert response.redirect_chain[-1][0] == "/teams/acme/"
    assert b"<h1>Acme Research</h1>" in response.content


def test_a_team_with_nothing_connected_is_offered_connect_bipsync(alice: User, bob: User) -> None:
    for user, kind_field in (
        (alice, b'name="kind" id="id_kind"'),
        (bob, b'type="hidden" name="kind" value="user"'),
    ):
        page = signed_in(user).get("/teams/acme/")
        assert page.status_code == 200
        assert b"Nothing of Acme Research is connected to Bipsync yet." in page.content
        assert b'action="/teams/acme/connections/connect/"' in page.content
        assert kind_field in page.content
        assert b'name="tenant" value=' not in page.content  # no site known yet


def test_the_connect_form_is_filled_with_the_site_the_team_used_before(
    team: Team, alice: User
) -> None:
    machine(team, tenant="initech", status=Connection.Status.DISCONNECTED)
    page = signed_in(alice).get("/teams/acme/")
    assert b"Nothing of Acme Research is connected" in page.content
    assert b'value="initech"' in page.content
    # And the disconnected connection itself is shown, last, with its way back.
    assert cards(page.content.decode()) == ["disconnected"]


def test_problems_come_first_with_the_action_that_fixes_each(team: Team, alice: User) -> None:
    healthy = machine(team, tenant="acme")
    failed_sync = machine(team, tenant="beta", client_id="beta-export")
    SyncRun.objects.create(
        connection=failed_sync,
        status=SyncRun.Status.FAILED,
        finished_at=timezone.now(),
        error_message="Bipsync answered 500 three times.",
    )
    retrying = service_account(
        team, tenant="gamma", status=Connection.Status.FAILING, last_error_message="Timed out."
    )
    broken = service_account(
        team,
        tenant="delta",
        status=Connection.Status.NEEDS_RECONNECT,
        last_error_message="Bipsync refused the refresh token (invalid_grant).",
    )

    page = signed_in(alice).get("/teams/acme/")
    html = page.content.decode()
    assert cards(html) == ["needs_reconnect", "failing", "sync_failed", "none"]
    # Reconnect: the connect flow's form, naming the connection to reconnect in place.
    reconnect = html.split(f'data-connection="{broken.pk}"', 1)[1].split("</li>", 1)[0]
    assert 'action="/teams/acme/connections/connect/"' in reconnect
    assert f'name="connection" value="{broken.pk}"' in reconnect
    assert 'name="kind" value="service_account"' in reconnect
    assert ">Reconnect</button>" in reconnect
    assert "Bipsync refused the refresh token (invalid_grant)." in reconnect
    retry = html.split(f'data-connection="{retrying.pk}"', 1)[1].split("</li>", 1)[0]
    assert f'href="/teams/acme/connections/{retrying.pk}/">See what fails' in retry
    sync = html.split(f'data-connection="{failed_sync.pk}"', 1)[1].split("</li>", 1)[0]
    assert f'href="/teams/acme/sync/{failed_sync.pk}/">See the sync history' in sync
    assert "Bipsync answered 500 three times." in sync
    assert f'href="/teams/acme/connections/{healthy.pk}/">Open' in html
    assert "Nothing of Acme Research is connected" not in html


def test_a_member_sees_the_team_wide_problem_without_a_reconnect_they_may_not_make(
    team: Team, alice: User, bob: User
) -> None:
    broken = service_account(team, status=Connection.Status.NEEDS_RECONNECT)
    alices_own = Connection.objects.create(
        team=team, user=alice, tenant="acme", kind=Connection.Kind.USER
    )
    page = signed_in(bob).get("/teams/acme/")
    html = page.content.decode()
    card = html.split(f'data-connection="{broken.pk}"', 1)[1].split("</li>", 1)[0]
    assert "Reconnect</button>" not in card
    assert "Ask a team admin to reconnect it." in card
    assert str(alices_own.pk) not in html  # someone else's own connection stays theirs
    assert "Manage members" not in html


def test_a_reconnect_held_for_a_new_subject_asks_its_user_to_confirm(
    team: Team, alice: User
) -> None:
    service_account(team)
    client = signed_in(alice)
    session_key = client.session.session_key
    assert session_key
    record = PendingAuthorizationRecord.objects.create(
        state_hash=digest(secrets.token_urlsafe(16)),
        session_hash=digest(session_key),
        user=alice,
        team=team,
        kind=Connection.Kind.SERVICE_ACCOUNT,
        tenant="acme",
        payload="{}",
        expires_at=timezone.now() + timedelta(minutes=10),
        used_at=timezone.now(),
        held_access_token="held-not-real",
        held_details={"subject_name": "Other Team Robot"},
        held_until=timezone.now() + timedelta(minutes=10),
    )
    page = client.get("/teams/acme/")
    assert b"Confirm the reconnect of acme" in page.content
    assert b"Other Team Robot" in page.content
    assert f'href="/connections/confirm/{record.pk}/"'.encode() in page.content
    assert b"held-not-real" not in page.content
    # Only in the browser that reconnected: the confirmation page opens nowhere else.
    assert b"Confirm the reconnect" not in signed_in(alice).get("/teams/acme/").content


def test_the_overview_shows_last_and_next_sync_and_the_documents_synced(
    team: Team, alice: User, bob: User
) -> None:
    conn = machine(team)
    finished = timezone.now() - timedelta(minutes=5)
    SyncRun.objects.create(connection=conn, status=SyncRun.Status.SUCCEEDED, finished_at=finished)
    SyncSchedule.objects.create(
        connection=conn, next_due_at=finished + timedelta(hours=1), last_success_at=finished
    )
    for n in range(3):
        document(conn, n)
    document(conn, 99, deleted_at=timezone.now())
    # Research through alice's own connection is hers: bob's count leaves it out.
    own = Connection.objects.create(team=team, user=alice, tenant="acme", kind=Connection.Kind.USER)
    document(own, 7)

    html = signed_in(bob).get("/teams/acme/").content.decode()
    summary = html.split('<dl class="summary">', 1)[1].split("</dl>", 1)[0]
    assert f"{finished:%Y-%m-%d %H:%M} UTC" in summary
    assert f"{finished + timedelta(hours=1):%Y-%m-%d %H:%M} UTC" in summary
    assert 'href="/teams/acme/research/">3</a>' in summary
    assert "3 documents" in html
    alices = signed_in(alice).get("/teams/acme/").content.decode()
    assert 'href="/teams/acme/research/">4</a>' in alices


def test_an_outsider_gets_404_and_an_anonymous_visitor_signs_in_first(
    alice: User, charlie: User
) -> None:
    assert signed_in(charlie).get("/teams/acme/").status_code == 404
    response = Client().get("/teams/acme/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_the_navigation_offers_members_to_admins_only(alice: User, bob: User) -> None:
    assert (
        b'href="/teams/acme/members/">Members</a>' in signed_in(alice).get("/teams/acme/").content
    )
    assert b'href="/teams/acme/members/"' not in signed_in(bob).get("/teams/acme/").content
