"""The connect flow's answers are never cached and never name their address to the next page:
``Cache-Control: no-store`` on Connect, the callback (its address carries the code and state) and
the confirmation page, whatever the outcome; ``Referrer-Policy: no-referrer`` on their redirects
and ``strict-origin`` (the origin only, so that the page's own forms pass the CSRF check) on their
pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from tests.conftest import signed_in
from tests.connections.connect_support import (
    come_back,
    configure_partner,
    connect,
    new_world,
    start,
)
from tests.support.sandbox import Sandbox, SandboxWorld

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(sandbox: Sandbox, settings: Settings) -> SandboxWorld:
    created = new_world(sandbox)
    configure_partner(settings, sandbox, created)
    return created


def assert_private(response: Any) -> None:
    cache_control = {part.strip() for part in response["Cache-Control"].split(",")}
    assert "no-store" in cache_control, response["Cache-Control"]
    redirect_answer = 300 <= response.status_code < 400
    assert response["Referrer-Policy"] == ("no-referrer" if redirect_answer else "strict-origin")


def test_connect_and_a_successful_callback_are_private(
    sandbox: Sandbox, world: SandboxWorld, team: Team, bob: User
) -> None:
    client = signed_in(bob)
    connect_answer = client.post(
        f"/teams/{team.slug}/connections/connect/", {"tenant": world.tenant, "kind": "user"}
    )
    assert connect_answer.status_code == 302
    assert_private(connect_answer)

    location = sandbox.authorize(
        connect_answer["Location"], world.member.email, world.member.password
    )
    answer = come_back(client, location)

    assert answer.status_code == 302
    assert_private(answer)


def test_a_refused_callback_and_a_refused_connect_are_private(
    world: SandboxWorld, team: Team, bob: User
) -> None:
    client = signed_in(bob)

    refused = client.get("/connections/callback/?" + urlencode({"code": "c", "state": "s"}))
    bad_form = client.post(f"/teams/{team.slug}/connections/connect/", {"tenant": "Not A Slug"})

    assert refused.status_code == 400
    assert_private(refused)
    assert bad_form.status_code == 400
    assert_private(bad_form)


def test_the_confirmation_of_a_held_reconnect_is_private(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User
) -> None:
    client = signed_in(alice)
    connect(client, sandbox, team, world, as_user=world.admin, kind="service_account")
    other = sandbox.create_team(world.tenant, "Macro desk")
    created = sandbox.create_user(
        world.tenant, other["id"], f"macro@{world.tenant}.example", world.admin.password, True
    )
    url = start(client, team, world.tenant, "service_account")
    location = sandbox.authorize(url, created["email"], world.admin.password)
    held = come_back(client, location)
    assert held["Location"].startswith("/connections/confirm/")

    page = client.get(held["Location"])

    assert page.status_code == 200
    assert_private(page)
