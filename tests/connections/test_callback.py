"""The callback refuses every forged, replayed or misdirected answer with a 400-class page, and
makes no token request for it (the sandbox's counters prove it)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.db import connection as db_connection
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.pending import PendingAuthorizationRecord
from tests.conftest import signed_in
from tests.connections.connect_support import (
    code_exchanges,
    come_back,
    configure_partner,
    new_world,
    query,
    start,
)
from tests.support.sandbox import Sandbox, SandboxWorld, authorization_url, pkce_pair

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(sandbox: Sandbox, settings: Settings) -> SandboxWorld:
    created = new_world(sandbox)
    configure_partner(settings, sandbox, created)
    return created


def approve(sandbox: Sandbox, world: SandboxWorld, url: str) -> dict[str, str]:
    """Sign in and approve at the sandbox; the parameters of its redirect to our callback."""
    return query(sandbox.authorize(url, world.member.email, world.member.password))


def callback(client: Client, params: dict[str, str] | list[tuple[str, str]]) -> Any:
    return client.get("/connections/callback/?" + urlencode(params))


def assert_refused(response: Any, sentence: str) -> None:
    assert 400 <= response.status_code < 500, response.status_code
    assert sentence in response.content.decode()
    assert not Connection.objects.exists()


def test_a_callback_without_state_is_refused_without_a_token_request(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User
) -> None:
    client = signed_in(bob)
    params = approve(sandbox, world, start(client, team, world.tenant))
    del params["state"]

    assert_refused(callback(client, params), "carries no state")
    assert code_exchanges(sandbox, world.user_app.client_id) == 0


def test_a_callback_with_an_unknown_state_is_refused_without_a_token_request(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User
) -> None:
    client = signed_in(bob)
    params = approve(sandbox, world, start(client, team, world.tenant))
    params["state"] = "x" * 43

    assert_refused(callback(client, params), "does not belong to any connection started here")
    assert code_exchanges(sandbox, world.user_app.client_id) == 0


def test_a_callback_for_an_expired_authorization_is_refused_without_a_token_request(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User
) -> None:
    client = signed_in(bob)
    url = start(client, team, world.tenant)
    params = approve(sandbox, world, url)
    # Eleven minutes pass between the click and the answer (the lifetime is ten).
    record = PendingAuthorizationRecord.objects.get()
    data = json.loads(record.payload)
    data["created_at"] = (timezone.now() - timedelta(minutes=11)).isoformat()
    record.payload = json.dumps(data)
    record.save()

    assert_refused(callback(client, params), "has expired")
    assert code_exchanges(sandbox, world.user_app.client_id) == 0


def test_a_reused_callback_is_refused_and_the_code_is_exchanged_once(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User
) -> None:
    client = signed_in(bob)
    params = approve(sandbox, world, start(client, team, world.tenant))
    assert callback(client, params).status_code == 302

    assert 400 <= (replay := callback(client, params)).status_code < 500
    assert "was already used" in replay.content.decode()
    assert code_exchanges(sandbox, world.user_app.client_id) == 1
    assert Connection.objects.count() == 1


def test_a_callback_in_another_session_is_refused_and_leaves_the_owner_s_authorization(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User
) -> None:
    owner = signed_in(bob)
    params = approve(sandbox, world, start(owner, team, world.tenant))

    # The same person in another browser, and another member: neither may complete it.
    assert_refused(callback(signed_in(bob), params), "started in another browser session")
    assert code_exchanges(sandbox, world.user_app.client_id) == 0

    # The refusals did not use up the owner's authorization.
    assert callback(owner, params).status_code == 302
    assert code_exchanges(sandbox, world.user_app.client_id) == 1


def test_a_callback_of_another_member_is_refused(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User, bob: User
) -> None:
    params = approve(sandbox, world, start(signed_in(bob), team, world.tenant))

    assert_refused(callback(signed_in(alice), params), "started in another browser session")
    assert code_exchanges(sandbox, world.user_app.client_id) == 0


def test_a_signed_out_callback_is_refused(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User
) -> None:
    params = approve(sandbox, world, start(signed_in(bob), team, world.tenant))

    assert_refused(callback(Client(), params), "not signed in here any more")
    assert code_exchanges(sandbox, world.user_app.client_id) == 0


@pytest.mark.parametrize(
    ("iss", "sentence"),
    [
        ("https://evil.example/t/acme/api", "from another Bipsync site"),
        (None, "does not say which Bipsync site it comes from"),
    ],
)
def test_a_callback_with_a_wrong_or_missing_iss_is_refused_without_a_token_request(
    sandbox: Sandbox,
    world: SandboxWorld,
    team: Team,
    bob: User,
    iss: str | None,
    sentence: str,
) -> None:
    client = signed_in(bob)
    params = approve(sandbox, world, start(client, team, world.tenant))
    assert params["iss"] == world.api_base
    if iss is None:
        del params["iss"]
    else:
        params["iss"] = iss

    assert_refused(callback(client, params), sentence)
    assert code_exchanges(sandbox, world.user_app.client_id) == 0


def test_an_error_redirect_shows_a_clear_page_without_a_token_request(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User
) -> None:
    client = signed_in(bob)
    state = query(start(client, team, world.tenant))["state"]

    response = callback(
        client,
        {
            "error": "temporarily_unavailable",
            "error_description": "Bipsync is down for maintenance",
            "state": state,
            "iss": world.api_base,
        },
    )

    assert_refused(response, "Bipsync did not grant the connection (temporarily_unavailable")
    assert "down for maintenance" in response.content.decode()
    assert code_exchanges(sandbox, world.user_app.client_id) == 0


def test_a_code_from_another_tenant_is_refused_without_a_token_request(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User
) -> None:
    client = signed_in(bob)
    state = query(start(client, team, world.tenant))["state"]
    # An attacker's (or a mixed-up) authorization at another tenant, answered with our state.
    elsewhere = new_world(sandbox)
    _, challenge = pkce_pair()
    url = authorization_url(
        elsewhere.web_base,
        elsewhere.user_app.client_id,
        sandbox.redirect_uri,
        scope="rest_api:read",
        state=state,
        code_challenge=challenge,
    )
    location = sandbox.authorize(url, elsewhere.member.email, elsewhere.member.password)
    assert query(location)["iss"] == elsewhere.api_base

    assert_refused(come_back(client, location), "from another Bipsync site")
    assert code_exchanges(sandbox, world.user_app.client_id) == 0
    assert code_exchanges(sandbox, elsewhere.user_app.client_id) == 0


def test_a_callback_with_a_repeated_parameter_is_refused(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User
) -> None:
    client = signed_in(bob)
    params = approve(sandbox, world, start(client, team, world.tenant))
    pairs = [*params.items(), ("code", "another-code")]

    assert_refused(callback(client, pairs), "malformed")
    assert code_exchanges(sandbox, world.user_app.client_id) == 0


@pytest.mark.django_db(transaction=True)
def test_two_identical_callbacks_at_once_exchange_the_code_once(
    sandbox: Sandbox, settings: Settings, team: Team, bob: User
) -> None:
    world = new_world(sandbox)
    configure_partner(settings, sandbox, world)
    first = signed_in(bob)
    params = approve(sandbox, world, start(first, team, world.tenant))
    # A second client in the same browser session (same cookie), as a double-clicked link.
    second = Client()
    second.cookies = first.cookies
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def arrive(client: Client) -> None:
        try:
            barrier.wait()
            statuses.append(callback(client, params).status_code)
        finally:
            db_connection.close()  # each thread has its own database connection

    threads = [threading.Thread(target=arrive, args=(c,)) for c in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(statuses) == [302, 400]
    assert code_exchanges(sandbox, world.user_app.client_id) == 1
    assert Connection.objects.count() == 1
