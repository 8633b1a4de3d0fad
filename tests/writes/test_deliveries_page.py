"""The Deliveries page of a team: writes by status with their progress, links into Bipsync,
failure sentences, retry and cancel for admins only, and each write on its connection's page
(Django test client against real PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import Team, User
from bipsync_partner.connections.models import Connection
from bipsync_partner.writes.models import Write
from tests.conftest import signed_in

pytestmark = pytest.mark.django_db

NOTE_ID = "5f0c9a1b2c3d4e5f60718293"


def connection(team: Team, user: User | None = None, **fields: Any) -> Connection:
    return Connection.objects.create(
        team=team,
        user=user,
        created_by=user,
        tenant="acme",
        kind=Connection.Kind.USER if user else Connection.Kind.SERVICE_ACCOUNT,
        scopes="rest_api:read rest_api:write",
        **fields,
    )


def write(team: Team, conn: Connection | None, value: str, **fields: Any) -> Write:
    defaults: dict[str, Any] = {
        "team": team,
        "connection": conn,
        "kind": Write.Kind.NOTE,
        "external_source": "crm",
        "external_value": value,
        "ordering_key": f"crm:{value}",
        "payload": {"title": f"Call {value}"},
    }
    defaults.update(fields)
    return Write.objects.create(**defaults)


@pytest.fixture
def service(team: Team) -> Connection:
    return connection(team)


def test_the_page_shows_each_status_with_its_link_or_sentence_and_the_progress(
    team: Team, alice: User, service: Connection
) -> None:
    write(team, service, "q1")
    write(team, service, "s1", status=Write.Status.SENDING, attempts=1)
    write(
        team,
        service,
        "d1",
        status=Write.Status.DELIVERED,
        bipsync_id=NOTE_ID,
        finished_at=timezone.now(),
    )
    write(
        team,
        service,
        "f1",
        status=Write.Status.FAILED,
        error="Bipsync refused the note: user is not a user of this site.",
    )

    page = signed_in(alice).get("/teams/acme/deliveries/").content.decode()

    assert "1 queued, 1 sending, 1 delivered, 1 failed, 0 cancelled" in page
    assert '<progress value="2" max="4">' in page
    assert f'href="https://acme.bipsync.com/research/{NOTE_ID}"' in page
    assert "Bipsync refused the note: user is not a user of this site." in page
    for value in ("q1", "s1", "d1", "f1"):
        assert f"Call {value}" in page
    failed_only = signed_in(alice).get("/teams/acme/deliveries/?status=failed").content.decode()
    assert "Call f1" in failed_only
    assert "Call d1" not in failed_only


def test_the_link_follows_the_tenants_web_host_and_the_document_path_setting(
    team: Team, alice: User, service: Connection, settings: Any
) -> None:
    settings.BIPSYNC_WEB_BASE_TEMPLATE = "https://{tenant}.example.test/app"
    settings.BIPSYNC_DOCUMENT_URL_PATH = "/documents/{id}/view"
    write(team, service, "d1", status=Write.Status.DELIVERED, bipsync_id=NOTE_ID)

    page = signed_in(alice).get("/teams/acme/deliveries/").content.decode()

    assert f'href="https://acme.example.test/app/documents/{NOTE_ID}/view"' in page


def test_the_page_is_paginated(team: Team, alice: User, service: Connection) -> None:
    Write.objects.bulk_create(
        Write(
            team=team,
            connection=service,
            kind=Write.Kind.NOTE,
            external_source="crm",
            external_value=f"n{i}",
            ordering_key=f"crm:n{i}",
            payload={"title": f"Bulk {i:03d}"},
        )
        for i in range(60)
    )
    client = signed_in(alice)

    first = client.get("/teams/acme/deliveries/").content.decode()
    second = client.get("/teams/acme/deliveries/?page=2").content.decode()

    assert "Page 1 of 2" in first
    assert "Bulk 059" in first
    assert "Bulk 009" not in first
    assert "Bulk 009" in second
    assert "Bulk 059" not in second


def test_an_admin_retries_a_failed_write_and_it_is_queued_again_and_due_now(
    team: Team, alice: User, service: Connection
) -> None:
    failed = write(
        team,
        service,
        "f1",
        status=Write.Status.FAILED,
        attempts=5,
        uncertain=True,
        error="Bipsync kept answering 500.",
        next_attempt_at=timezone.now() + timedelta(days=1),
        finished_at=timezone.now(),
    )

    response = signed_in(alice).post(f"/teams/acme/deliveries/{failed.uid}/retry/")

    assert response.status_code == 302
    failed.refresh_from_db()
    assert failed.status == Write.Status.QUEUED
    assert failed.attempts == 0
    assert failed.error == ""
    assert failed.next_attempt_at <= timezone.now()
    assert failed.uncertain  # still looked up by external id before it is sent again


def test_an_admin_cancels_a_queued_note_and_the_attachment_waiting_for_it(
    team: Team, alice: User, service: Connection
) -> None:
    note = write(team, service, "q1")
    attachment = write(
        team,
        service,
        "q1/report.pdf",
        kind=Write.Kind.ATTACHMENT,
        depends_on=note,
        ordering_key=note.ordering_key,
    )

    response = signed_in(alice).post(f"/teams/acme/deliveries/{note.uid}/cancel/", follow=True)

    assert "with 1 attachment(s) waiting for it" in response.content.decode()
    note.refresh_from_db()
    attachment.refresh_from_db()
    assert (note.status, attachment.status) == (Write.Status.CANCELLED, Write.Status.CANCELLED)


def test_a_write_being_sent_cannot_be_cancelled_and_the_admin_is_told_why(
    team: Team, alice: User, service: Connection
) -> None:
    sending = write(team, service, "s1", status=Write.Status.SENDING)

    response = signed_in(alice).post(f"/teams/acme/deliveries/{sending.uid}/cancel/", follow=True)

    assert "Only a queued or failed write that no worker is sending can be cancelled." in (
        response.content.decode()
    )
    sending.refresh_from_db()
    assert sending.status == Write.Status.SENDING


def test_a_member_sees_the_page_without_actions_and_gets_403_for_them(
    team: Team, alice: User, bob: User, service: Connection
) -> None:
    failed = write(team, service, "f1", status=Write.Status.FAILED, error="No.")
    member = signed_in(bob)

    page = member.get("/teams/acme/deliveries/").content.decode()
    assert "Call f1" in page
    assert "/retry/" not in page
    assert "/cancel/" not in page
    assert member.post(f"/teams/acme/deliveries/{failed.uid}/retry/").status_code == 403
    assert member.post(f"/teams/acme/deliveries/{failed.uid}/cancel/").status_code == 403
    failed.refresh_from_db()
    assert failed.status == Write.Status.FAILED


def test_a_member_does_not_see_the_writes_of_another_members_own_connection(
    team: Team, alice: User, bob: User
) -> None:
    write(team, connection(team, alice), "mine")

    assert "Call mine" not in signed_in(bob).get("/teams/acme/deliveries/").content.decode()
    assert "Call mine" in signed_in(alice).get("/teams/acme/deliveries/").content.decode()


def test_an_outsider_gets_404(team: Team, charlie: User, service: Connection) -> None:
    failed = write(team, service, "f1", status=Write.Status.FAILED)
    outsider = signed_in(charlie)

    assert outsider.get("/teams/acme/deliveries/").status_code == 404
    assert outsider.post(f"/teams/acme/deliveries/{failed.uid}/retry/").status_code == 404


def test_each_write_shows_on_its_connections_page_with_a_link_to_its_deliveries(
    team: Team, alice: User, service: Connection
) -> None:
    write(team, service, "d1", status=Write.Status.DELIVERED, bipsync_id=NOTE_ID)
    write(team, service, "f1", status=Write.Status.FAILED, error="Refused: title too long.")
    write(team, connection(team, alice), "elsewhere")

    page = signed_in(alice).get(f"/teams/acme/connections/{service.pk}/").content.decode()

    assert "Call d1" in page
    assert "Call f1" in page
    assert "Refused: title too long." in page
    assert "Call elsewhere" not in page
    assert f"/teams/acme/deliveries/?connection={service.pk}" in page
    filtered = signed_in(alice).get(f"/teams/acme/deliveries/?connection={service.pk}")
    assert "Call elsewhere" not in filtered.content.decode()
