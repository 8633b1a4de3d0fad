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
from bipsync_partner.connections.models import Connection
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
        expect(page.locator(".status.active")).to_have_text("Active")
        body = page.content()
    finally:
        context.close()

    connection = Connection.objects.get()
    assert connection.status == Connection.Status.ACTIVE
    assert connection.kind == Connection.Kind.SERVICE_ACCOUNT
    assert connection.access_token is not None
    assert connection.access_token not in body
    assert api_accepts(world, connection.access_token)
