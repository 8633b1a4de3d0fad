"""Every team page fits a 390 px phone and a 1280 px screen without scrolling sideways.

The test finds the pages itself: signed in as a team admin of a team with connections in every
state and research synced from the sandbox, it follows every same-origin link (GET) from the team
overview, so pages added later are covered once a link reaches them. It skips signing out, the
Django admin, static files and anything that is not an HTML page; forms (POST actions) are never
submitted. Debian's chromium through Playwright; the partner app is pytest-django's live_server.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urldefrag, urlsplit

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, BrowserContext, Page
from pytest_django.fixtures import Settings

from accounts.invitations import invite
from accounts.models import Team, User
from bipsync_partner.connections.models import Connection
from bipsync_partner.sync import engine, scheduling
from bipsync_partner.sync.client import api_for
from bipsync_partner.sync.models import SyncRun
from tests.conftest import PASSWORD
from tests.support.browser import chromium
from tests.support.sandbox import Sandbox
from tests.sync.conftest import (
    SyncWorld,
    machine_connection,
    make_sync_world,
    partner_settings_for,
    user_connection,
)

WIDTHS = (390, 1280)
#: Enough for every page kind with a few variants each; a runaway crawl (endless pagination)
#: stops here instead of timing out.
MAX_PAGES = 80
#: Addresses of one path that differ only in their query (pagination, filters) visited at most.
MAX_PER_PATH = 3
SKIPPED_PREFIXES = ("/accounts/logout/", "/admin/", "/static/", "/metrics", "/healthz", "/readyz")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium(allow_sync_orm=True) as launched:
        yield launched


@pytest.fixture
def world(sandbox: Sandbox) -> Iterator[SyncWorld]:
    fresh = make_sync_world(sandbox)
    yield fresh
    fresh.world.http.close()


def sync_inline(conn: Connection) -> SyncRun:
    """A real sync against the sandbox in this process (no worker: the pages are the point)."""
    requested = scheduling.request_sync(conn, publish=lambda run_id, delay: None)
    engine.execute(requested.run.pk, api_factory=api_for)
    requested.run.refresh_from_db()
    return requested.run


def furnish(sandbox: Sandbox, world: SyncWorld, team: Team, alice: User, bob: User) -> str:
    """Connections in every state, research synced, a failed sync, a pending invitation (its
    link returned: the invitee's page is reached from an email, not from a team page)."""
    sandbox.generate_research(world.tenant, world.team_id, 120, seed=7)
    synced = machine_connection(team, world)
    run = sync_inline(synced)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    user_connection(world, team, alice)
    user_connection(world, team, bob)
    failing = machine_connection(
        team,
        world,
        tenant="a-rather-long-tenant-name-that-does-not-break-0123456789",
        status=Connection.Status.FAILING,
        last_error_message="Bipsync could not be reached: the connection timed out after 15 s.",
    )
    SyncRun.objects.create(
        connection=failing,
        status=SyncRun.Status.FAILED,
        finished_at=timezone.now(),
        error_message="Bipsync answered 503 Service Unavailable three times in a row.",
    )
    Connection.objects.create(
        team=team,
        tenant=world.tenant,
        kind=Connection.Kind.SERVICE_ACCOUNT,
        status=Connection.Status.NEEDS_RECONNECT,
        subject_name="Service account of a team with a long name",
        last_error_message="Bipsync refused the refresh token (invalid_grant).",
        access_expires_at=timezone.now() - timedelta(hours=1),
    )
    sent = invite(team, "someone.with.a.very.long.address@research.example.com", "member", alice)
    return sent.link


def same_origin_links(page: Page, origin: str) -> list[str]:
    hrefs: list[str] = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    found = []
    for href in hrefs:
        url, _fragment = urldefrag(href)
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != origin:
            continue
        if parts.path.startswith(SKIPPED_PREFIXES) or parts.path.endswith(".json"):
            continue
        found.append(url)
    return found


def overflow(page: Page) -> tuple[int, int]:
    widths: list[int] = page.evaluate(
        "() => [document.documentElement.scrollWidth, window.innerWidth]"
    )
    return widths[0], widths[1]


def crawl(
    contexts: dict[int, BrowserContext], start: str, origin: str
) -> tuple[list[str], list[str]]:
    """Visit every page reachable from ``start``; return (visited, problems)."""
    pages = {width: context.new_page() for width, context in contexts.items()}
    queue, seen = [start], {start}
    visited: list[str] = []
    problems: list[str] = []
    per_path: Counter[str] = Counter()
    while queue and len(visited) < MAX_PAGES:
        url = queue.pop(0)
        links: list[str] = []
        for width, page in pages.items():
            response = page.goto(url)
            kind = response.headers.get("content-type", "") if response else ""
            if response is None or not kind.startswith("text/html"):
                break
            if response.status >= 400:
                problems.append(f"{url} answered {response.status}")
            scroll, inner = overflow(page)
            if scroll > inner:
                problems.append(f"{url} scrolls sideways at {width} px ({scroll} > {inner})")
            links = links or same_origin_links(page, origin)
        else:
            visited.append(url.removeprefix(origin))
        for link in links:
            path = urlsplit(link).path
            if link not in seen and per_path[path] < MAX_PER_PATH:
                seen.add(link)
                per_path[path] += 1
                queue.append(link)
    return visited, problems


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_every_team_page_fits_a_phone_and_a_desktop_without_scrolling_sideways(
    browser: Browser,
    live_server: Any,
    sandbox: Sandbox,
    settings: Settings,
    world: SyncWorld,
    team: Team,
    alice: User,
    bob: User,
) -> None:
    for name, value in partner_settings_for(sandbox, world.world).items():
        setattr(settings, name, value)
    origin = live_server.url.replace("localhost", "127.0.0.1")
    settings.SITE_URL = origin
    invitation_link = furnish(sandbox, world, team, alice, bob)

    contexts = {
        width: browser.new_context(viewport={"width": width, "height": 900}) for width in WIDTHS
    }
    try:
        for context in contexts.values():
            page = context.new_page()
            page.goto(f"{origin}/accounts/login/")
            page.get_by_label("Email").fill(alice.email)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{origin}/teams/acme/")
            page.close()
        visited, problems = crawl(contexts, f"{origin}/teams/acme/", origin)
    finally:
        for context in contexts.values():
            context.close()
    # The invitee's page, as the invitee sees it: signed out.
    anonymous = {
        width: browser.new_context(viewport={"width": width, "height": 900}) for width in WIDTHS
    }
    try:
        for width, context in anonymous.items():
            page = context.new_page()
            page.goto(invitation_link)
            scroll, inner = overflow(page)
            if scroll > inner:
                problems.append(f"the invitation page scrolls sideways at {width} px")
        visited.append("/invitations/?token=… (signed out)")
    finally:
        for context in anonymous.values():
            context.close()

    listing = "\n  ".join(visited)
    # The crawl really went through the team's pages (else a broken link walk would pass).
    expected = {"/teams/acme/", "/teams/acme/members/", "/teams/acme/connections/"}
    expected |= {"/teams/acme/sync/", "/teams/acme/research/"}
    assert expected <= set(visited), f"visited:\n  {listing}"
    assert any(v.startswith("/teams/acme/connections/") and len(v) > 30 for v in visited)
    assert problems == [], "\n".join(problems) + f"\nvisited ({len(visited)}):\n  {listing}"
