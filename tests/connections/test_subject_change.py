"""A member's own connection reconnected as another Bipsync account is held for the member's
confirmation, as the service account's is for an admin's: never overwritten silently."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.connections.crypto import new_encryption_key
from bipsync_partner.connections.models import Connection, ConnectionEvent
from bipsync_partner.connections.pending import PendingAuthorizationRecord
from tests.conftest import signed_in
from tests.connections.connect_support import (
    api_accepts,
    configure_partner,
    connect,
    new_world,
)
from tests.support.sandbox import Sandbox, SandboxWorld, WorldUser

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("identity_source")]


@pytest.fixture
def world(sandbox: Sandbox, settings: Settings) -> SandboxWorld:
    created = new_world(sandbox)
    configure_partner(settings, sandbox, created)
    return created


def colleague(sandbox: Sandbox, world: SandboxWorld) -> WorldUser:
    """Another person of the same Bipsync team: signing in as them at Bipsync (a shared
    browser, a second account) authorizes another subject."""
    created = sandbox.create_user(
        world.tenant,
        world.team_id,
        f"colleague@{world.tenant}.example",
        world.member.password,
        name="Colin Colleague",
    )
    return WorldUser(created["id"], created["email"], world.member.password)


def reconnect_as_colleague(
    client: Client, sandbox: Sandbox, team: Team, world: SandboxWorld
) -> tuple[Connection, Any]:
    connect(client, sandbox, team, world, as_user=world.member)
    original = Connection.objects.get()
    response = connect(client, sandbox, team, world, as_user=colleague(sandbox, world))
    return original, response


def test_a_member_s_reconnect_as_another_bipsync_account_waits_for_the_member(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User
) -> None:
    client = signed_in(bob)
    original, response = reconnect_as_colleague(client, sandbox, team, world)

    assert response.status_code == 302
    assert response["Location"].startswith("/connections/confirm/")
    unchanged = Connection.objects.get()
    assert unchanged.subject_id == original.subject_id == world.member.id
    assert unchanged.access_token == original.access_token
    assert [e.kind for e in ConnectionEvent.objects.filter(connection=unchanged)] == [
        ConnectionEvent.Kind.CONNECTED
    ]
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert "Your connection" in page.content.decode()
    assert "Colin Colleague" in page.content.decode()

    held_access = PendingAuthorizationRecord.objects.get(held_until__isnull=False)
    held_token = held_access.held_access_token
    assert held_token is not None
    cancelled = client.post(response["Location"], {"decision": "cancel"})

    assert cancelled.status_code == 302
    assert Connection.objects.get().subject_id == world.member.id
    assert not api_accepts(world, held_token)
    assert original.access_token is not None
    assert api_accepts(world, original.access_token)


def test_a_member_s_confirmed_reconnect_acts_as_the_new_account_and_stays_theirs(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User
) -> None:
    client = signed_in(bob)
    original, response = reconnect_as_colleague(client, sandbox, team, world)

    confirmed = client.post(response["Location"], {"decision": "confirm"})

    changed = Connection.objects.get()
    assert confirmed["Location"] == f"/teams/{team.slug}/connections/{original.pk}/"
    assert changed.pk == original.pk
    assert changed.user == bob
    assert changed.kind == Connection.Kind.USER
    assert changed.subject_name == "Colin Colleague"
    last = ConnectionEvent.objects.filter(
        connection=changed, kind=ConnectionEvent.Kind.RECONNECTED
    ).get()
    assert "confirmed the change of Bipsync subject" in last.message
    assert last.actor == bob


def test_an_admin_cannot_confirm_a_member_s_held_reconnect(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User, bob: User
) -> None:
    _, response = reconnect_as_colleague(signed_in(bob), sandbox, team, world)

    assert signed_in(alice).post(response["Location"], {"decision": "confirm"}).status_code == 404
    assert Connection.objects.get().subject_id == world.member.id


def test_a_held_reconnect_that_no_longer_decrypts_is_refused_with_a_sentence(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User, settings: Settings
) -> None:
    client = signed_in(bob)
    _, response = reconnect_as_colleague(client, sandbox, team, world)
    settings.TOKEN_ENCRYPTION_KEYS = [new_encryption_key(), *settings.TOKEN_ENCRYPTION_KEYS]
    # Only the held tokens lose their key: seal them again with a key then dropped.
    record = PendingAuthorizationRecord.objects.get(held_until__isnull=False)
    record.held_access_token = record.held_access_token
    record.save()
    settings.TOKEN_ENCRYPTION_KEYS = settings.TOKEN_ENCRYPTION_KEYS[1:]

    answer = client.post(response["Location"], {"decision": "confirm"})

    assert answer.status_code == 400
    assert "can no longer be read here" in answer.content.decode()
    assert Connection.objects.get().subject_id == world.member.id


@pytest.mark.parametrize("identity_source", ["token_response"], indirect=True)
def test_without_any_word_of_whom_a_token_acts_as_a_reconnect_is_not_held(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User, identity_source: str
) -> None:
    sandbox.set_token_subject_parameters(False)
    client = signed_in(bob)

    original, response = reconnect_as_colleague(client, sandbox, team, world)

    assert response.status_code == 302
    assert not response["Location"].startswith("/connections/confirm/")
    assert original.subject_id == ""
    assert not PendingAuthorizationRecord.objects.filter(held_until__isnull=False).exists()
