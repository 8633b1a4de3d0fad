"""The callback's answers to what it cannot use: a pending authorization that no longer decrypts,
an absurdly long code, an overlong error description. Each gets a sentence on a 400 page, and
none makes a token request (the sandbox's counters prove it)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.connections.crypto import new_encryption_key
from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.pending import PendingAuthorizationRecord
from tests.conftest import signed_in
from tests.connections.connect_support import (
    code_exchanges,
    configure_partner,
    new_world,
    query,
    start,
)
from tests.support.sandbox import Sandbox, SandboxWorld

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(sandbox: Sandbox, settings: Settings) -> SandboxWorld:
    created = new_world(sandbox)
    configure_partner(settings, sandbox, created)
    return created


def approve(sandbox: Sandbox, world: SandboxWorld, url: str) -> dict[str, str]:
    return query(sandbox.authorize(url, world.member.email, world.member.password))


def callback(client: Client, params: dict[str, str]) -> Any:
    return client.get("/connections/callback/?" + urlencode(params))


def test_a_pending_authorization_that_no_longer_decrypts_is_refused_with_a_sentence(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User, settings: Settings
) -> None:
    client = signed_in(bob)
    params = approve(sandbox, world, start(client, team, world.tenant))
    # The key the pending authorization was sealed with left the keyring (a rotation that
    # dropped it too early): its ciphertext no longer opens.
    settings.TOKEN_ENCRYPTION_KEYS = [new_encryption_key()]

    response = callback(client, params)

    assert response.status_code == 400
    assert "can no longer be read here" in response.content.decode()
    assert code_exchanges(sandbox, world.user_app.client_id) == 0
    assert not Connection.objects.exists()
    # The row is used up: the same answer cannot be tried again once the key is back.
    assert PendingAuthorizationRecord.objects.get().used_at is not None


def test_a_code_longer_than_the_bound_is_refused_without_a_token_request(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User, settings: Settings
) -> None:
    client = signed_in(bob)
    params = approve(sandbox, world, start(client, team, world.tenant))
    params["code"] = "x" * 100_000

    response = callback(client, params)

    assert response.status_code == 400
    assert "malformed" in response.content.decode()
    assert "x" * 100 not in response.content.decode()
    assert code_exchanges(sandbox, world.user_app.client_id) == 0
    assert settings.BIPSYNC_MAX_AUTHORIZATION_CODE_LENGTH < 100_000


def test_a_code_at_the_bound_is_still_exchanged(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User, settings: Settings
) -> None:
    client = signed_in(bob)
    params = approve(sandbox, world, start(client, team, world.tenant))
    settings.BIPSYNC_MAX_AUTHORIZATION_CODE_LENGTH = len(params["code"])

    assert callback(client, params).status_code == 302
    assert code_exchanges(sandbox, world.user_app.client_id) == 1


def test_an_overlong_error_description_is_clipped_on_the_page_and_in_the_log(
    sandbox: Sandbox,
    world: SandboxWorld,
    team: Team,
    bob: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = signed_in(bob)
    state = query(start(client, team, world.tenant))["state"]
    description = "Bipsync is down for maintenance " + "d" * 100_000

    with caplog.at_level("INFO"):
        response = callback(
            client,
            {
                "error": "e" * 100_000,
                "error_description": description,
                "state": state,
                "iss": world.api_base,
            },
        )

    page = response.content.decode()
    assert response.status_code == 400
    assert "Bipsync is down for maintenance" in page
    assert "d" * 600 not in page
    assert "e" * 100 not in page
    assert len(page) < 20_000
    assert all(len(record.getMessage()) < 2_000 for record in caplog.records)
    assert code_exchanges(sandbox, world.user_app.client_id) == 0
