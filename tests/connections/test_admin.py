"""The back office shows connections and their history, and never a token or secret."""

from __future__ import annotations

import pytest
from django.db import connection as db_connection
from django.test import Client
from django.urls import reverse
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.connections.crypto import new_encryption_key
from bipsync_partner.connections.models import Connection, ConnectionEvent
from tests.connections.conftest import MakeConnection

pytestmark = pytest.mark.django_db

ACCESS = "visible-access-token-if-leaked-1111"
REFRESH = "visible-refresh-token-if-leaked-2222"
SECRET = "visible-client-secret-if-leaked-3333"


@pytest.fixture
def staff() -> Client:
    user = User.objects.create_superuser("ops@example.com", "ops password 123")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def connections(make_connection: MakeConnection, team: Team) -> list[Connection]:
    user = make_connection(access_token=ACCESS, refresh_token=REFRESH)
    user.record(ConnectionEvent.Kind.CONNECTED, None, "Connected acme.")
    machine = Connection.objects.create(
        team=team,
        tenant="acme",
        kind=Connection.Kind.CLIENT_CREDENTIALS,
        client_id="customer-machine-app",
        client_secret=SECRET,
        bipsync_team_id="0123456789abcdef01234567",
        access_token=ACCESS + "-machine",
    )
    return [user, machine]


def ciphertexts() -> list[str]:
    with db_connection.cursor() as cursor:
        cursor.execute(
            "SELECT access_token, refresh_token, client_secret FROM connections_connection"
        )
        return [value for row in cursor.fetchall() for value in row if value]


def assert_no_secret(html: str) -> None:
    for secret in (ACCESS, REFRESH, SECRET):
        assert secret not in html
    for ciphertext in ciphertexts():
        assert ciphertext not in html


def test_the_change_list_shows_connections_without_tokens(
    staff: Client, connections: list[Connection]
) -> None:
    response = staff.get(reverse("admin:connections_connection_changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "acme" in html
    assert "Machine (client credentials)" in html
    assert_no_secret(html)


def test_the_change_list_filters_and_searches(staff: Client, connections: list[Connection]) -> None:
    url = reverse("admin:connections_connection_changelist")
    for query in (
        {"status__exact": "active"},
        {"kind__exact": "client_credentials"},
        {"tenant": "acme"},
        {"q": "acme"},
        {"q": "Acme Research"},
        {"q": "Alice at Acme"},
    ):
        response = staff.get(url, query)
        assert response.status_code == 200, query
        assert_no_secret(response.content.decode())
    only_machines = staff.get(url, {"kind__exact": "client_credentials"}).content.decode()
    assert "1 connection" in only_machines


def test_the_change_page_shows_expiry_and_key_but_never_a_token(
    staff: Client, connections: list[Connection]
) -> None:
    for conn in connections:
        response = staff.get(reverse("admin:connections_connection_change", args=[conn.pk]))
        assert response.status_code == 200
        html = response.content.decode()
        assert_no_secret(html)
        assert "stored (key " in html
        assert "Tokens (never shown)" in html
    user_page = staff.get(
        reverse("admin:connections_connection_change", args=[connections[0].pk])
    ).content.decode()
    assert "Connected acme." in user_page


def test_connections_cannot_be_added_or_edited_in_the_admin(
    staff: Client, connections: list[Connection]
) -> None:
    assert staff.get(reverse("admin:connections_connection_add")).status_code == 403
    conn = connections[0]
    staff.post(
        reverse("admin:connections_connection_change", args=[conn.pk]),
        {"tenant": "evil", "status": "disconnected"},
    )
    stored = Connection.objects.get(pk=conn.pk)
    assert (stored.tenant, stored.status) == ("acme", "active")


def test_the_event_list_renders_without_secrets(
    staff: Client, connections: list[Connection]
) -> None:
    response = staff.get(reverse("admin:connections_connectionevent_changelist"), {"q": "acme"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Connected acme." in html
    assert_no_secret(html)


def test_the_admin_decrypts_nothing_so_it_works_even_with_a_wrong_key(
    staff: Client, connections: list[Connection], settings: Settings
) -> None:
    settings.TOKEN_ENCRYPTION_KEYS = [new_encryption_key()]
    assert staff.get(reverse("admin:connections_connection_changelist")).status_code == 200
    for conn in connections:
        url = reverse("admin:connections_connection_change", args=[conn.pk])
        assert staff.get(url).status_code == 200
