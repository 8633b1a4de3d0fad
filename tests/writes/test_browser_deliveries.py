"""The Deliveries page and a connection's scopes in a real browser (Debian's chromium through
Playwright), from a 390 px phone to 1280 px: no horizontal scrolling, the admin's buttons
there. The app runs as pytest-django's ``live_server`` (committed data, hence
``transaction=True``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from accounts.models import Team, User
from bipsync_partner.connections.models import Connection
from bipsync_partner.writes.models import Write
from tests.conftest import PASSWORD
from tests.support.browser import chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium(allow_sync_orm=True) as launched:
        yield launched


def no_horizontal_scroll(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [390, 1280])
def test_the_deliveries_page_and_the_scopes_fit_the_screen(
    browser: Browser, live_server: Any, team: Team, alice: User, width: int
) -> None:
    connection = Connection.objects.create(
        team=team, tenant="acme", kind=Connection.Kind.SERVICE_ACCOUNT, scopes="rest_api:read"
    )
    long_value = "crm-export-" + "x" * 120  # one unbroken word, wider than a phone
    for index, status in enumerate(["queued", "delivered", "failed"]):
        Write.objects.create(
            team=team,
            connection=connection,
            kind=Write.Kind.NOTE,
            external_source="bipsync-partner",
            external_value=f"{long_value}-{index}",
            ordering_key=f"note:{index}",
            payload={"title": f"Quarterly call notes {index}"},
            status=status,
            bipsync_id="5f0c9a1b2c3d4e5f60718293" if status == "delivered" else "",
            error="Bipsync refused the note: the field entities holds an id that is not a "
            "category of this site."
            if status == "failed"
            else "",
        )
    context = browser.new_context(viewport={"width": width, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{live_server.url}/accounts/login/")
        page.get_by_label("Email").fill(alice.email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("link", name="Deliveries").click()

        expect(page.get_by_role("heading", name="Deliveries to Bipsync")).to_be_visible()
        expect(page.get_by_text("2 of 3 finished")).to_be_visible()
        expect(page.get_by_role("button", name="Retry")).to_have_count(1)
        expect(page.get_by_role("link", name="Open in Bipsync")).to_have_count(1)
        assert no_horizontal_scroll(page)

        page.goto(f"{live_server.url}/teams/{team.slug}/connections/{connection.pk}/")
        expect(page.get_by_role("button", name="Re-consent at Bipsync")).to_be_visible()
        expect(page.get_by_role("heading", name="Writes to Bipsync")).to_be_visible()
        assert no_horizontal_scroll(page)
    finally:
        context.close()
