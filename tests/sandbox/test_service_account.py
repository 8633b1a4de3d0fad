"""The service-account variation of the authorization-code grant [doc]."""

from __future__ import annotations

import pytest

from tests.support.sandbox import SandboxError, SandboxWorld, query_of


def test_its_tokens_act_as_the_apps_service_account_in_the_admins_team(
    sandbox_world: SandboxWorld,
) -> None:
    world = sandbox_world
    tokens = world.connect(world.service_app, user=world.admin)
    info = world.sandbox.introspect(tokens["access_token"])
    assert info["kind"] == "service_account"
    assert info["team_id"] == world.team_id
    assert info["service_account_id"]
    assert info["user_id"] == world.admin.id  # who approved, recorded for audit

    again = world.connect(world.service_app, user=world.admin)
    assert (
        world.sandbox.introspect(again["access_token"])["service_account_id"]
        == (info["service_account_id"])
    )


def test_it_keeps_acting_as_the_service_account_after_a_refresh(
    sandbox_world: SandboxWorld,
) -> None:
    world = sandbox_world
    tokens = world.connect(world.service_app, user=world.admin)
    refreshed = world.refresh(world.service_app, tokens["refresh_token"])
    assert refreshed.status_code == 200
    info = world.sandbox.introspect(refreshed.json()["access_token"])
    assert info["kind"] == "service_account"
    assert info["team_id"] == world.team_id


def test_it_tells_a_member_that_only_a_team_admin_may_approve(
    sandbox_world: SandboxWorld,
) -> None:
    world = sandbox_world
    start = world.start(world.service_app)
    with pytest.raises(SandboxError, match="not an admin of any team"):
        world.sandbox.authorize(start.url, world.member.email, world.member.password)


def test_it_explains_the_service_account_on_the_consent_page(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    start = world.start(world.service_app)
    with world.sandbox.sign_in(world.tenant, world.admin.email, world.admin.password) as browser:
        consent = browser.get(start.url)
    assert consent.status_code == 200
    assert "Service account" in consent.text
    assert "not as you" in consent.text
    assert "Partner Sync (service account)" in consent.text
    assert "Read research, notes and files through the REST API" in consent.text
    assert 'value="approve"' in consent.text


def test_it_shows_a_member_the_service_account_page_without_an_approve_button(
    sandbox_world: SandboxWorld,
) -> None:
    world = sandbox_world
    start = world.start(world.service_app)
    with world.sandbox.sign_in(world.tenant, world.member.email, world.member.password) as browser:
        page = browser.get(start.url)
    assert page.status_code == 403
    assert "only a team admin" in page.text.lower()
    assert 'value="approve"' not in page.text
    assert 'value="deny"' in page.text


def test_it_lets_the_admin_deny_a_service_account(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    start = world.start(world.service_app)
    params = query_of(
        world.sandbox.authorize(start.url, world.admin.email, world.admin.password, approve=False)
    )
    assert params["error"] == "access_denied"
    assert params["state"] == start.state
