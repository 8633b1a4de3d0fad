"""Acceptance, in a real browser: a team admin disconnects a connection after reading what will
happen, and the Connections page fits a 390 px phone and a 1280 px screen without scrolling
sideways or breaking a date in two.

Debian's chromium driven by Playwright (never ``playwright install``); the partner app runs as
pytest-django's ``live_server`` (committed data, hence ``transaction=True``); the sandbox is the
session's running server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.connections.models import Connection, ConnectionEvent
from bipsync_partner.sync.models import DocumentSighting, ResearchDocument, SyncRun
from tests.conftest import PASSWORD
from tests.connections.connect_support import api_accepts, configure_partner, new_world
from tests.support.browser import chromium
from tests.support.sandbox import Sandbox, SandboxWorld

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium(allow_sync_orm=True) as launched:
        yield launched


@pytest.fixture
def site(live_server: Any, sandbox: Sandbox, settings: Settings) -> tuple[str, SandboxWorld]:
    site_url = str(live_server.url).replace("localhost", "127.0.0.1")
    world = new_world(sandbox, redirect_uri=f"{site_url}/connections/callback/")
    configure_partner(settings, sandbox, world, site_url=site_url)
    return site_url, world


def sign_in(page: Page, site_url: str, user: User) -> None:
    page.goto(f"{site_url}/accounts/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="Connections")).to_be_visible()


def add_machine(page: Page, site_url: str, world: SandboxWorld, label: str) -> None:
    page.goto(f"{site_url}/teams/acme/connections/machine/")
    page.get_by_label("Label").fill(label)
    page.get_by_label("Bipsync site").fill(world.tenant)
    page.get_by_label("Client id").fill(world.team_app.client_id)
    page.get_by_label("Client secret").fill(world.team_app.client_secret or "")
    page.get_by_label("Bipsync team id").fill(world.team_id)
    page.get_by_role("button", name="Check and save").click()
    expect(page.get_by_text("Machine connection added")).to_be_visible()


def test_a_team_admin_disconnects_after_reading_what_will_happen(
    browser: Browser, site: tuple[str, SandboxWorld], team: Team, alice: User
) -> None:
    site_url, world = site
    context = browser.new_context()
    try:
        page = context.new_page()
        sign_in(page, site_url, alice)
        add_machine(page, site_url, world, "Research export")
        connection = Connection.objects.get()
        for n in range(2):
            seen = ResearchDocument.objects.create(
                source_connection=connection,
                team=team,
                tenant=world.tenant,
                bipsync_id=f"{n:024x}",
            )
            DocumentSighting.objects.create(document=seen, connection=connection)
        access = connection.access_token
        assert access is not None

        page.get_by_role("link", name="Connections", exact=True).click()
        row = page.locator(f'tr[data-connection="{connection.pk}"]')
        expect(row).to_contain_text("Research export")
        row.get_by_role("link", name="Disconnect").click()

        expect(page.get_by_role("heading", name="Disconnect this connection?")).to_be_visible()
        expect(page.get_by_text("revoked at Bipsync")).to_be_visible()
        expect(
            page.get_by_text("2 research documents synced only through this connection disappear")
        ).to_be_visible()
        # Backing out changes nothing.
        page.get_by_role("link", name="Keep it connected").click()
        expect(page.locator(".status.active").first).to_have_text("Active")
        assert Connection.objects.get().status == Connection.Status.ACTIVE

        page.get_by_role("link", name="Disconnect").click()
        page.get_by_role("button", name="Disconnect").click()

        expect(page).to_have_url(re.compile(rf"/teams/acme/connections/{connection.pk}/$"))
        expect(page.get_by_text("Disconnected from Bipsync")).to_be_visible()
        expect(page.locator(".status.disconnected").first).to_have_text("Disconnected")
        # Its sync history stays reachable.
        page.get_by_role("link", name="Sync history").click()
        expect(page.get_by_text("This page is read-only")).to_be_visible()
    finally:
        context.close()

    after = Connection.objects.get()
    assert after.status == Connection.Status.DISCONNECTED
    assert after.client_secret is None
    assert ConnectionEvent.objects.filter(
        connection=after, kind=ConnectionEvent.Kind.DISCONNECTED, actor=alice
    ).exists()
    assert not api_accepts(world, access)


NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"
#: Every date on the page whose box is more than one line high (a date broken in two).
BROKEN_DATES = """() => [...document.querySelectorAll('time.when')]
    .filter(t => t.getClientRects().length > 1).map(t => t.textContent)"""


@pytest.mark.parametrize("width", [390, 1280])
def test_the_connections_page_fits_the_screen_without_scrolling_sideways(
    browser: Browser, site: tuple[str, SandboxWorld], team: Team, alice: User, width: int
) -> None:
    site_url, world = site
    context = browser.new_context(viewport={"width": width, "height": 900})
    try:
        page = context.new_page()
        sign_in(page, site_url, alice)
        add_machine(page, site_url, world, "Research export for the macro desk")
        Connection.objects.create(
            team=team,
            user=alice,
            tenant=world.tenant,
            kind=Connection.Kind.USER,
            subject_id="5f0c9a1b2c3d4e5f60718293",
            subject_name="Alice Admin at a Bipsync site with a long name",
            status=Connection.Status.NEEDS_RECONNECT,
            last_error_message="Bipsync no longer accepts this connection's authorization.",
        )

        machine = Connection.objects.get(kind=Connection.Kind.CLIENT_CREDENTIALS)
        now = timezone.now()
        SyncRun.objects.create(
            connection=machine,
            status=SyncRun.Status.FAILED,
            requested_by=alice,
            trigger=SyncRun.Trigger.MANUAL,
            started_at=now - timedelta(minutes=3),
            finished_at=now,
            seen_count=12345,
            total_reported=123456,
            error_message="Bipsync refused the call because this server's IP address is not "
            "on the tenant's allow-list.",
        )
        for path in (
            "/teams/acme/connections/",
            "/teams/acme/sync/",
            f"/teams/acme/connections/{machine.pk}/",
            f"/teams/acme/connections/{machine.pk}/disconnect/",
            f"/teams/acme/connections/{machine.pk}/machine/",
            f"/teams/acme/sync/{machine.pk}/",
        ):
            page.goto(site_url + path)
            expect(page.get_by_role("heading", level=1)).to_be_visible()
            wide = page.evaluate("document.documentElement.scrollWidth")
            assert page.evaluate(NO_SIDEWAYS_SCROLL), f"{path} is {wide} px wide at {width} px"
            assert page.evaluate(BROKEN_DATES) == [], f"{path} breaks a date at {width} px"
        page.goto(site_url + "/teams/acme/connections/")
        expect(page.get_by_role("link", name="Disconnect").first).to_be_visible()
    finally:
        context.close()
