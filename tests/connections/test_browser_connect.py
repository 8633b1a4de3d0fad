"""Acceptance: a team admin connects Bipsync in a real browser.

Debian's chromium driven by Playwright (never ``playwright install``). The partner app runs as
pytest-django's ``live_server`` (a real HTTP server on a free port, committed data, hence
``transaction=True``); the sandbox is the session's running server. The app's settings point at
the sandbox, and the sandbox's applications are registered with the live server's callback.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, expect
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.connections.models import Connection, ConnectionEvent
from tests.conftest import PASSWORD
from tests.connections.connect_support import api_accepts, configure_partner, new_world
from tests.support.browser import chromium
from tests.support.sandbox import Sandbox


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium(allow_sync_orm=True) as launched:
        yield launched


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_team_admin_connects_bipsync_in_a_real_browser(
    browser: Browser,
    live_server: Any,
    sandbox: Sandbox,
    settings: Settings,
    team: Team,
    alice: User,
) -> None:
    site_url = live_server.url.replace("localhost", "127.0.0.1")
    world = new_world(sandbox, redirect_uri=f"{site_url}/connections/callback/")
    configure_partner(settings, sandbox, world, site_url=site_url)

    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{site_url}/accounts/login/")
        page.get_by_label("Email").fill(alice.email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()

        page.get_by_role("link", name="Connections").click()
        expect(
            page.get_by_role("heading", name="Bipsync connections of Acme Research")
        ).to_be_visible()
        page.get_by_label("Bipsync site").fill(world.tenant)
        page.get_by_label("Connect as").select_option("service_account")
        page.get_by_role("button", name="Connect Bipsync").click()

        # Now on the tenant's Bipsync pages (the sandbox).
        expect(page.get_by_role("heading", name="Sign in to Bipsync")).to_be_visible()
        page.get_by_label("Email").fill(world.admin.email)
        page.get_by_label("Password").fill(world.admin.password)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="Approve").click()

        # Back at the partner app, on the connection's page.
        expect(page).to_have_url(re.compile(r"/teams/acme/connections/[0-9a-f-]{36}/$"))
        expect(page.get_by_text("Connected to Bipsync")).to_be_visible()
        expect(page.locator("#status .status.active")).to_have_text("Active")
        body = page.content()
    finally:
        context.close()

    connection = Connection.objects.get()
    assert connection.status == Connection.Status.ACTIVE
    assert connection.kind == Connection.Kind.SERVICE_ACCOUNT
    assert connection.access_token is not None
    assert connection.access_token not in body
    assert api_accepts(world, connection.access_token)


def _sign_in_and_connect(page: Any, site_url: str, user: User, tenant: str) -> None:
    page.goto(f"{site_url}/accounts/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{site_url}/teams/acme/connections/")
    page.get_by_label("Bipsync site").fill(tenant)
    page.get_by_label("Connect as").select_option("service_account")
    page.get_by_role("button", name="Connect Bipsync").click()


def _approve_at_bipsync(page: Any, email: str, password: str) -> None:
    expect(page.get_by_role("heading", name="Sign in to Bipsync")).to_be_visible()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Approve").click()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_held_reconnect_is_confirmed_in_a_real_browser(
    browser: Browser,
    live_server: Any,
    sandbox: Sandbox,
    settings: Settings,
    team: Team,
    alice: User,
) -> None:
    # The confirmation page's own form must pass the CSRF check: a page that told the browser
    # "no-referrer" would make it post "Origin: null", which Django refuses with a 403.
    site_url = live_server.url.replace("localhost", "127.0.0.1")
    world = new_world(sandbox, redirect_uri=f"{site_url}/connections/callback/")
    configure_partner(settings, sandbox, world, site_url=site_url)
    other = sandbox.create_team(world.tenant, "Macro desk")
    macro = sandbox.create_user(
        world.tenant, other["id"], f"macro@{world.tenant}.example", world.admin.password, True
    )

    first = browser.new_context()
    try:
        page = first.new_page()
        _sign_in_and_connect(page, site_url, alice, world.tenant)
        _approve_at_bipsync(page, world.admin.email, world.admin.password)
        expect(page.locator("#status .status.active")).to_have_text("Active")
    finally:
        first.close()
    before = Connection.objects.get().subject_id

    second = browser.new_context()  # signed out at Bipsync, so another account can approve
    try:
        page = second.new_page()
        _sign_in_and_connect(page, site_url, alice, world.tenant)
        _approve_at_bipsync(page, macro["email"], world.admin.password)
        expect(
            page.get_by_role("heading", name="This is a different Bipsync account")
        ).to_be_visible()
        page.get_by_role("button", name="Use the new account").click()
        expect(page.get_by_text("Forbidden")).to_have_count(0)
        expect(page.locator(".status.active").first).to_have_text("Active")
    finally:
        second.close()

    connection = Connection.objects.get()
    assert connection.subject_id
    assert connection.subject_id != before
    reconnect = connection.events.get(kind=ConnectionEvent.Kind.RECONNECTED)
    assert "confirmed the change of Bipsync subject" in reconnect.message
