"""The Webhooks pages in a real browser (Debian's chromium through Playwright), at a 390 px phone
and at 1280 px: an admin adds an endpoint, copies the secret shown once, sees a delivery in the
log, replays it and rotates the secret; every page fits the screen without sideways scrolling.
The app runs as pytest-django's ``live_server`` (committed data, hence ``transaction=True``);
the deliverer runs in the test's process, against a real receiving server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction
from playwright.sync_api import Browser, Page, expect
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.events import delivery, outbox
from bipsync_partner.events.models import Delivery, Endpoint
from tests.conftest import PASSWORD
from tests.events.conftest import Receiver
from tests.support.browser import chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium(allow_sync_orm=True) as launched:
        yield launched


def fits(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def sign_in(page: Page, base: str, user: User) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def one_event(team: Team) -> None:
    with transaction.atomic():
        outbox.record(team.pk, "connection.connected", {"connection": {"id": "c-1"}})


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [390, 1280])
def test_an_admin_adds_an_endpoint_replays_a_delivery_and_rotates_the_secret(
    browser: Browser,
    live_server: Any,
    events_settings: Settings,
    receiver: Receiver,
    team: Team,
    alice: User,
    width: int,
) -> None:
    context = browser.new_context(viewport={"width": width, "height": 900})
    try:
        page = context.new_page()
        sign_in(page, live_server.url, alice)
        page.get_by_role("link", name="Webhooks").click()
        expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
        assert fits(page)

        # Bad input first: an address the product does not send to, and no event type.
        page.get_by_label("URL").fill("ftp://files.example.com/hooks")
        page.get_by_role("button", name="Add endpoint").click()
        expect(page.get_by_text("The URL must start with https://")).to_be_visible()
        expect(page.get_by_text("Choose at least one event type.")).to_be_visible()
        assert not Endpoint.objects.exists()

        page.get_by_label("URL").fill(receiver.url)
        page.get_by_label("Description").fill("Our CRM's receiver, " + "long-" * 30)
        page.get_by_role("checkbox", name=re.compile(r"connection\.connected:")).check()
        page.get_by_role("button", name="Add endpoint").click()
        expect(page.get_by_role("heading", name="Endpoint added")).to_be_visible()
        secret = page.locator("#signing-secret").inner_text()
        assert secret.startswith("whsec_")
        assert fits(page)

        endpoint = Endpoint.objects.get(team=team)
        assert endpoint.url == receiver.url
        assert endpoint.event_types == ["connection.connected"]
        receiver.secrets = [secret]  # the receiver knows only what the page showed
        one_event(team)
        assert delivery.deliver_due(endpoint.pk) == "1 deliveries attempted"
        assert receiver.unverified == 0
        assert len(receiver.accepted) == 1

        page.get_by_role("link", name="Go to the endpoint").click()
        row = page.locator("tr[data-status='delivered']")
        expect(row).to_have_count(1)
        expect(row.get_by_text("connection.connected")).to_be_visible()
        assert fits(page)

        row.get_by_role("button", name="Replay").click()
        expect(
            page.get_by_text(re.compile(r"connection\.connected evt_\w+ is sent again"))
        ).to_be_visible()
        assert delivery.deliver_due(endpoint.pk) == "1 deliveries attempted"
        [webhook_id] = receiver.accepted
        assert receiver.repeats[webhook_id] == 1  # the same webhook-id: a receiver de-duplicates

        page.get_by_role("button", name="Rotate secret").click()
        expect(page.get_by_role("heading", name="Secret rotated")).to_be_visible()
        rotated = page.locator("#signing-secret").inner_text()
        assert rotated.startswith("whsec_")
        assert rotated != secret
        assert fits(page)
        # During the overlap a receiver that still knows only the old secret verifies as well.
        one_event(team)
        assert delivery.deliver_due(endpoint.pk) == "1 deliveries attempted"
        receiver.secrets = [rotated]
        one_event(team)
        assert delivery.deliver_due(endpoint.pk) == "1 deliveries attempted"
        assert receiver.unverified == 0
        assert Delivery.objects.filter(status=Delivery.Status.DELIVERED).count() == 3

        page.get_by_role("link", name="Go to the endpoint").click()
        expect(
            page.get_by_text(re.compile("Signed with the previous secret too until"))
        ).to_be_visible()
        assert fits(page)
    finally:
        context.close()
