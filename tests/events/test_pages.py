"""The Webhooks pages (admins only) and the Django admin: add an endpoint (its secret shown once,
stored encrypted), refuse a private address, edit, disable/enable, rotate, replay from the log."""

from __future__ import annotations

import pytest
from django.db import connection as db
from django.test import Client
from django.urls import reverse
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.events.models import Delivery, Endpoint
from bipsync_partner.events.outbox import record
from tests.conftest import signed_in
from tests.events.conftest import Receiver, add_endpoint, run_due

pytestmark = pytest.mark.django_db(transaction=True)


def list_url(team: Team) -> str:
    return reverse("events:endpoints", args=[team.slug])


def test_an_admin_adds_an_endpoint_and_sees_its_secret_once(
    events_settings: Settings, receiver: Receiver, team: Team, alice: User
) -> None:
    client = signed_in(alice)
    answer = client.post(
        list_url(team),
        {"url": receiver.url, "description": "CRM", "event_types": ["write.delivered"]},
    )
    assert answer.status_code == 200
    assert "no-store" in answer["Cache-Control"]
    endpoint = Endpoint.objects.get()
    secret = str(endpoint.secret)
    assert secret.startswith("whsec_")
    assert secret in answer.content.decode()
    # Stored encrypted, and never shown again.
    with db.cursor() as cursor:
        cursor.execute("SELECT secret FROM events_endpoint")
        (stored,) = cursor.fetchone()
    assert secret not in stored
    page = client.get(reverse("events:endpoint", args=[team.slug, endpoint.pk]))
    assert page.status_code == 200
    assert secret not in page.content.decode()
    assert secret not in client.get(list_url(team)).content.decode()


def test_a_private_address_is_refused_with_a_sentence(
    events_settings: Settings, team: Team, alice: User
) -> None:
    events_settings.EVENTS_ALLOW_PRIVATE_ADDRESSES = False
    answer = signed_in(alice).post(
        list_url(team), {"url": "https://10.0.0.5/hooks", "event_types": ["sync.completed"]}
    )
    assert answer.status_code == 400
    assert "a private, loopback, link-local or reserved address" in answer.content.decode()
    assert not Endpoint.objects.exists()


def test_members_and_outsiders_cannot_see_the_webhooks(
    events_settings: Settings, receiver: Receiver, team: Team, bob: User, charlie: User
) -> None:
    endpoint = add_endpoint(team, receiver)
    for user, status in ((bob, 403), (charlie, 404)):
        client = signed_in(user)
        assert client.get(list_url(team)).status_code == status
        page = reverse("events:endpoint", args=[team.slug, endpoint.pk])
        assert client.get(page).status_code == status
        rotate = reverse("events:rotate", args=[team.slug, endpoint.pk])
        assert client.post(rotate).status_code == status


def test_an_admin_edits_disables_enables_and_rotates(
    events_settings: Settings, receiver: Receiver, team: Team, alice: User
) -> None:
    endpoint = add_endpoint(team, receiver, ["write.delivered"])
    old = str(endpoint.secret)
    client = signed_in(alice)
    page = reverse("events:endpoint", args=[team.slug, endpoint.pk])

    saved = client.post(page, {"url": receiver.url, "event_types": ["sync.completed"]})
    assert saved.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.event_types == ["sync.completed"]
    refused = client.post(page, {"url": receiver.url, "event_types": ["nope"]})
    assert refused.status_code == 400

    toggle = reverse("events:set_enabled", args=[team.slug, endpoint.pk])
    client.post(toggle, {"enabled": "0"})
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert record(team.pk, "sync.completed", {}) is None
    client.post(toggle, {"enabled": "1"})
    endpoint.refresh_from_db()
    assert endpoint.enabled

    rotated = client.post(reverse("events:rotate", args=[team.slug, endpoint.pk]))
    endpoint.refresh_from_db()
    assert str(endpoint.secret) != old
    assert str(endpoint.secret) in rotated.content.decode()
    assert str(endpoint.previous_secret) == old
    assert "Signed with the previous secret too" in client.get(page).content.decode()


def test_the_delivery_log_shows_each_attempt_and_replays_one(
    events_settings: Settings, receiver: Receiver, team: Team, alice: User
) -> None:
    endpoint = add_endpoint(team, receiver)
    receiver.behaviour.status = 500
    event = record(team.pk, "write.failed", {"write": {"id": "w"}})
    assert event is not None
    run_due()
    client = signed_in(alice)
    page = reverse("events:endpoint", args=[team.slug, endpoint.pk])
    log = client.get(page).content.decode()
    assert event.uid in log
    assert "The endpoint answered 500." in log

    receiver.behaviour.status = None
    row = Delivery.objects.get()
    Delivery.objects.filter(pk=row.pk).update(status="failed")
    replay = reverse("events:replay", args=[team.slug, endpoint.pk, row.pk])
    assert client.post(replay).status_code == 302
    assert run_due() == ["delivered"]
    assert [seen.webhook_id for seen in receiver.seen] == [event.uid, event.uid]
    assert client.get(f"{page}?status=nope").status_code == 200


def test_the_django_admin_never_shows_a_secret(
    events_settings: Settings, receiver: Receiver, team: Team
) -> None:
    endpoint = add_endpoint(team, receiver)
    endpoint.rotate_secret(endpoint.created)
    staff = User.objects.create_superuser("ops@example.com", "ops password 123")
    client = Client()
    client.force_login(staff)
    for url in (
        reverse("admin:events_endpoint_changelist"),
        reverse("admin:events_endpoint_change", args=[endpoint.pk]),
    ):
        answer = client.get(url)
        assert answer.status_code == 200
        assert str(endpoint.secret) not in answer.content.decode()
        assert str(endpoint.previous_secret) not in answer.content.decode()
    assert "secret" not in repr(endpoint) + str(endpoint)
