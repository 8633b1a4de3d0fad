"""The Connections page as a manager: labels, what the list shows, machine credentials refused
twice and reconnected with a new secret, disconnect confirmed on a page first, and the list
keeping its actions when the Connect form comes back with a mistake.

Through the real views (Django test client, PostgreSQL) against the running sandbox over HTTP.
"""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.connections.models import Connection, ConnectionEvent
from bipsync_partner.sync.models import DocumentSighting, ResearchDocument, SyncRun
from tests.conftest import signed_in
from tests.connections.connect_support import api_accepts, configure_partner, connect, new_world
from tests.support.sandbox import Sandbox, SandboxWorld, WorldUser

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(sandbox: Sandbox, settings: Settings) -> SandboxWorld:
    created = new_world(sandbox)
    configure_partner(settings, sandbox, created)
    return created


def machine_form(world: SandboxWorld, **fields: str) -> dict[str, str]:
    data = {
        "tenant": world.tenant,
        "client_id": world.team_app.client_id,
        "client_secret": world.team_app.client_secret or "",
        "bipsync_team_id": world.team_id,
        "scopes": "rest_api:read",
    }
    data.update(fields)
    return data


def add_machine(world: SandboxWorld, alice: User, **fields: str) -> Connection:
    response = signed_in(alice).post(
        "/teams/acme/connections/machine/", machine_form(world, **fields)
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    return Connection.objects.get(pk=response["Location"].rstrip("/").rsplit("/", 1)[-1])


def broken_machine(team: Team, world: SandboxWorld, **fields: object) -> Connection:
    """A machine connection whose stored secret Bipsync no longer accepts (rotated there), as
    the token service leaves it: needs reconnecting, with the error it met."""
    values: dict[str, object] = {
        "team": team,
        "tenant": world.tenant,
        "kind": Connection.Kind.CLIENT_CREDENTIALS,
        "client_id": world.team_app.client_id,
        "client_secret": "the-secret-before-rotation",
        "bipsync_team_id": world.team_id,
        "scopes": f"rest_api:read team_{world.team_id}",
        "subject_id": world.team_id,
        "subject_name": "Research desk",
        "status": Connection.Status.NEEDS_RECONNECT,
        "last_error_code": "invalid_client",
        "last_error_message": "Bipsync refused the machine connection's credentials.",
    }
    values.update(fields)
    return Connection.objects.create(**values)


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def row_of(page: str, connection: Connection) -> str:
    match = re.search(rf'<tr data-connection="{connection.pk}">(.*?)</tr>', page, re.S)
    assert match, f"no row for {connection.pk}"
    return match.group(1)


# --- labels and the list ---------------------------------------------------------------------


def test_an_admin_labels_a_connection_and_the_list_shows_it_beside_the_kind(
    world: SandboxWorld, team: Team, alice: User
) -> None:
    connection = add_machine(world, alice)
    client = signed_in(alice)

    response = client.post(
        f"/teams/acme/connections/{connection.pk}/label/", {"label": "Research export"}
    )

    assert response.status_code == 302
    assert Connection.objects.get(pk=connection.pk).label == "Research export"
    row = row_of(client.get("/teams/acme/connections/").content.decode(), connection)
    assert "Machine (client credentials)" in row
    assert "Research export" in row


def test_a_label_longer_than_80_characters_is_refused_with_a_sentence(
    world: SandboxWorld, team: Team, alice: User
) -> None:
    connection = add_machine(world, alice, label="Export")

    response = signed_in(alice).post(
        f"/teams/acme/connections/{connection.pk}/label/", {"label": "x" * 81}, follow=True
    )

    assert response.status_code == 200
    assert "at most 80 characters" in response.content.decode()
    assert Connection.objects.get(pk=connection.pk).label == "Export"


def test_a_member_cannot_label_the_team_s_connections(
    world: SandboxWorld, team: Team, alice: User, bob: User
) -> None:
    connection = add_machine(world, alice)

    response = signed_in(bob).post(
        f"/teams/acme/connections/{connection.pk}/label/", {"label": "Mine now"}
    )

    assert response.status_code == 403
    assert Connection.objects.get(pk=connection.pk).label == ""


def test_the_list_shows_whom_it_acts_as_the_client_id_created_last_refresh_last_sync_and_status(
    world: SandboxWorld, team: Team, alice: User
) -> None:
    connection = add_machine(world, alice, label="Research export")
    finished = timezone.now() - timedelta(minutes=5)
    SyncRun.objects.create(
        connection=connection,
        status=SyncRun.Status.SUCCEEDED,
        queued_at=finished - timedelta(minutes=1),
        started_at=finished - timedelta(minutes=1),
        finished_at=finished,
    )

    row = row_of(signed_in(alice).get("/teams/acme/connections/").content.decode(), connection)

    assert "Research export" in row
    assert connection.subject_name in row
    assert world.team_app.client_id in row
    assert f">{connection.created:%Y-%m-%d %H:%M}<" in row
    assert connection.last_refreshed_at is not None
    assert f">{connection.last_refreshed_at:%Y-%m-%d %H:%M}<" in row
    assert f">{finished:%Y-%m-%d %H:%M}<" in row  # last sync
    assert "Succeeded" in row
    assert '<span class="status active">Active</span>' in row
    # Every date is one unbreakable value.
    assert row.count('<time class="when"') == 3


# --- machine credentials ---------------------------------------------------------------------


def test_it_refuses_a_duplicate_machine_connection_and_links_to_the_existing_one(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User
) -> None:
    existing = add_machine(world, alice, label="Research export")
    requests_before = sandbox.token_requests(world.team_app.client_id, "client_credentials")

    response = signed_in(alice).post(
        "/teams/acme/connections/machine/",
        machine_form(world, bipsync_team_id=world.team_id.upper().lower()),
    )

    assert response.status_code == 409
    page = response.content.decode()
    assert "This team already has a machine connection with this client id and Bipsync team" in page
    assert f'href="/teams/acme/connections/{existing.pk}/"' in page
    assert Connection.objects.count() == 1
    # Refused before asking Bipsync for anything.
    assert sandbox.token_requests(world.team_app.client_id, "client_credentials") == requests_before


def test_adding_credentials_of_a_disconnected_machine_connection_continues_its_history(
    world: SandboxWorld, team: Team, alice: User
) -> None:
    first = add_machine(world, alice)
    signed_in(alice).post(f"/teams/acme/connections/{first.pk}/disconnect/")

    again = add_machine(world, alice)

    assert again.pk == first.pk
    assert Connection.objects.count() == 1
    assert again.status == Connection.Status.ACTIVE
    kinds = [e.kind for e in ConnectionEvent.objects.filter(connection=again).order_by("created")]
    assert kinds[-1] == ConnectionEvent.Kind.RECONNECTED


def test_a_machine_connection_is_reconnected_with_a_new_client_secret_checked_at_bipsync(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User
) -> None:
    broken = broken_machine(team, world)
    client = signed_in(alice)
    form = client.get(f"/teams/acme/connections/{broken.pk}/machine/")
    assert form.status_code == 200
    assert "the-secret-before-rotation" not in form.content.decode()

    response = client.post(
        f"/teams/acme/connections/{broken.pk}/machine/",
        {"client_secret": world.team_app.client_secret, "scopes": "rest_api:read"},
    )

    assert response.status_code == 302
    fixed = Connection.objects.get(pk=broken.pk)
    assert fixed.status == Connection.Status.ACTIVE
    assert fixed.client_secret == world.team_app.client_secret
    assert fixed.last_error_code == ""
    assert fixed.last_error_message == ""
    assert fixed.access_token is not None
    assert api_accepts(world, fixed.access_token)
    last = ConnectionEvent.objects.filter(connection=fixed).first()
    assert last is not None
    assert last.kind == ConnectionEvent.Kind.RECONNECTED
    assert "client secret was replaced" in last.message
    assert world.team_app.client_secret not in last.message
    # The page no longer shows the old error against the Active badge.
    page = client.get(f"/teams/acme/connections/{broken.pk}/").content.decode()
    assert '<span class="status active">Active</span>' in page
    assert "Bipsync refused the machine connection's credentials" not in page


def test_a_wrong_client_secret_is_refused_with_a_sentence_and_nothing_changes(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User
) -> None:
    broken = broken_machine(team, world)
    before = Connection.objects.get(pk=broken.pk)

    response = signed_in(alice).post(
        f"/teams/acme/connections/{broken.pk}/machine/",
        {"client_secret": "still-not-the-secret", "scopes": "rest_api:read"},
    )

    assert response.status_code == 400
    page = response.content.decode()
    assert "Bipsync does not accept these credentials: check the client id and secret." in page
    assert "still-not-the-secret" not in page
    after = Connection.objects.get(pk=broken.pk)
    assert after.client_secret == "the-secret-before-rotation"
    assert after.status == Connection.Status.NEEDS_RECONNECT
    assert after.version == before.version
    assert not ConnectionEvent.objects.filter(connection=after).exists()
    assert sandbox.token_requests(world.team_app.client_id, "client_credentials", outcome=None) >= 1


def test_a_scope_the_application_may_not_have_reads_like_a_sentence(
    world: SandboxWorld, team: Team, alice: User
) -> None:
    response = signed_in(alice).post(
        "/teams/acme/connections/machine/", machine_form(world, scopes="rest_api:fields:read")
    )

    assert response.status_code == 400
    page = response.content.decode()
    assert "These credentials are not allowed that scope at Bipsync." in page
    assert "invalid_scope" not in page
    assert not Connection.objects.exists()


def test_reconnecting_a_disconnected_machine_connection_asks_for_its_secret(
    world: SandboxWorld, team: Team, alice: User
) -> None:
    connection = add_machine(world, alice)
    client = signed_in(alice)
    client.post(f"/teams/acme/connections/{connection.pk}/disconnect/")

    empty = client.post(
        f"/teams/acme/connections/{connection.pk}/machine/",
        {"client_secret": "", "scopes": "rest_api:read"},
    )

    assert empty.status_code == 400
    assert "the stored one was deleted when the connection was disconnected" in (
        empty.content.decode()
    )
    assert Connection.objects.get(pk=connection.pk).status == Connection.Status.DISCONNECTED
    again = client.post(
        f"/teams/acme/connections/{connection.pk}/machine/",
        {"client_secret": world.team_app.client_secret, "scopes": "rest_api:read"},
    )
    assert again.status_code == 302
    assert Connection.objects.get(pk=connection.pk).status == Connection.Status.ACTIVE


def test_a_member_cannot_reconnect_the_team_s_machine_connection(
    world: SandboxWorld, team: Team, bob: User
) -> None:
    broken = broken_machine(team, world)
    assert signed_in(bob).get(f"/teams/acme/connections/{broken.pk}/machine/").status_code == 403


def test_the_machine_form_says_one_sentence_per_field(team: Team, alice: User) -> None:
    response = signed_in(alice).post(
        "/teams/acme/connections/machine/",
        {
            "tenant": "acme",
            "client_id": "x",
            "client_secret": "y",
            "bipsync_team_id": "abc",
            "scopes": "",
        },
    )

    assert response.status_code == 400
    errors = response.context["form"].errors
    assert errors["bipsync_team_id"] == [
        "A Bipsync team id is 24 hexadecimal characters (0-9, a-f)."
    ]
    page = response.content.decode()
    assert page.count('<p class="error">') == len(errors)


# --- disconnect ------------------------------------------------------------------------------


def test_disconnect_asks_first_and_says_what_happens_at_bipsync_and_to_the_research(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User
) -> None:
    client = signed_in(alice)
    connect(client, sandbox, team, world, as_user=world.admin, kind="service_account")
    connection = Connection.objects.get()
    for n in range(3):
        seen = ResearchDocument.objects.create(
            source_connection=connection,
            team=team,
            tenant=connection.tenant,
            bipsync_id=f"{n:024x}",
        )
        DocumentSighting.objects.create(document=seen, connection=connection)
    ResearchDocument.objects.create(
        source_connection=connection,
        team=team,
        tenant=connection.tenant,
        bipsync_id="f" * 24,
        deleted_at=timezone.now(),
    )

    page = client.get(f"/teams/acme/connections/{connection.pk}/disconnect/")

    assert page.status_code == 200
    text = page.content.decode()
    assert "Disconnect this connection?" in text
    assert "revoked at Bipsync" in text
    assert "3 research documents synced only through this connection disappear" in text
    assert Connection.objects.get().status == Connection.Status.ACTIVE  # GET changes nothing
    access = connection.access_token
    assert access is not None
    assert api_accepts(world, access)

    done = client.post(f"/teams/acme/connections/{connection.pk}/disconnect/")

    assert done.status_code == 302
    assert Connection.objects.get().status == Connection.Status.DISCONNECTED
    assert not api_accepts(world, access)


def test_the_list_s_disconnect_button_opens_the_confirmation_page(
    world: SandboxWorld, team: Team, alice: User
) -> None:
    connection = add_machine(world, alice)
    row = row_of(signed_in(alice).get("/teams/acme/connections/").content.decode(), connection)
    assert f'href="/teams/acme/connections/{connection.pk}/disconnect/"' in row
    assert 'method="post" action="/teams/acme/connections/' not in row.split("Disconnect")[0][-200:]


def test_a_member_cannot_open_the_disconnect_page_of_the_team_s_connection(
    world: SandboxWorld, team: Team, alice: User, bob: User, charlie: User
) -> None:
    connection = add_machine(world, alice)
    assert (
        signed_in(bob).get(f"/teams/acme/connections/{connection.pk}/disconnect/").status_code
        == 403
    )
    assert (
        signed_in(charlie).get(f"/teams/acme/connections/{connection.pk}/disconnect/").status_code
        == 404
    )


# --- the list after a mistake in the Connect form ---------------------------------------------


def test_after_a_mistake_in_the_connect_form_the_list_keeps_its_reconnect_and_disconnect_buttons(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User
) -> None:
    client = signed_in(alice)
    connect(client, sandbox, team, world, as_user=world.admin, kind="service_account")
    connection = Connection.objects.get()

    response = client.post(
        "/teams/acme/connections/connect/", {"tenant": "not a slug!", "kind": "user"}
    )

    assert response.status_code == 400
    page = response.content.decode()
    assert "A tenant is 1-63 lowercase letters" in page
    row = row_of(page, connection)
    assert ">Reconnect</button>" in row
    assert ">Disconnect</a>" in row


# --- the subject-change confirmation ---------------------------------------------------------


def test_the_subject_change_page_shows_both_identities_with_names_ids_and_bipsync_teams(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User
) -> None:
    client = signed_in(alice)
    connect(client, sandbox, team, world, as_user=world.admin, kind="service_account")
    original = Connection.objects.get()
    assert original.bipsync_team_id == world.team_id
    other = sandbox.create_team(world.tenant, "Macro desk")
    macro = sandbox.create_user(
        world.tenant, other["id"], f"macro@{world.tenant}.example", world.admin.password, True
    )

    response = connect(
        client,
        sandbox,
        team,
        world,
        as_user=WorldUser(macro["id"], macro["email"], world.admin.password),
        kind="service_account",
    )
    page = text_of(client.get(response["Location"]).content.decode())

    was, now = page.split("It acted as", 1)[1].split("Bipsync now authorized", 1)
    assert original.subject_name in was
    assert original.subject_id in was
    assert world.team_id in was
    assert original.bipsync_team_name
    assert original.bipsync_team_name in was
    assert "Macro desk" in now
    assert other["id"] in now
    assert original.subject_id not in now
    assert world.team_id not in now

    client.post(response["Location"], {"decision": "confirm"})

    changed = Connection.objects.get()
    assert (changed.bipsync_team_id, changed.bipsync_team_name) == (other["id"], "Macro desk")
