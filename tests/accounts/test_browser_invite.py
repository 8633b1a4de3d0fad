"""Acceptance: invite → accept → the new member connects, in a real browser.

Debian's chromium driven by Playwright (never ``playwright install``). The partner app runs as
pytest-django's ``live_server`` (a thread of this process, so the invitation email lands in
Django's locmem outbox of this process, as it would print on the console in development); the
sandbox is the session's running server, its applications registered with the live server's
callback.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import mail
from playwright.sync_api import Browser, Page, expect
from pytest_django.fixtures import Settings

from accounts.models import Membership, Team, User
from bipsync_partner.connections.models import Connection
from tests.conftest import PASSWORD
from tests.connections.connect_support import api_accepts, configure_partner, new_world
from tests.support.browser import chromium
from tests.support.sandbox import Sandbox

INVITEE = "dora@example.com"
INVITEE_PASSWORD = "plum-orchard-lantern-42"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium(allow_sync_orm=True) as launched:
        yield launched


def sign_in(page: Page, site_url: str, email: str) -> None:
    page.goto(f"{site_url}/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def invitation_link() -> str:
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [INVITEE]
    found = re.search(r"https?://\S+/invitations/\?token=\S+", str(message.body))
    assert found, message.body
    return found.group(0)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_invited_person_accepts_signs_up_and_connects_bipsync_in_a_real_browser(
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

    admin = browser.new_context()
    try:
        page = admin.new_page()
        sign_in(page, site_url, alice.email)
        page.get_by_role("link", name="Members", exact=True).click()
        page.get_by_label("Email").fill(INVITEE)
        page.get_by_label("Role", exact=True).select_option("member")
        page.get_by_role("button", name="Send invitation").click()
        expect(page.get_by_text(f"Invitation sent to {INVITEE}.")).to_be_visible()
        expect(page.locator(f'tr[data-invitation="{INVITEE}"]')).to_be_visible()
    finally:
        admin.close()

    link = invitation_link()
    assert link.startswith(f"{site_url}/invitations/?token=")
    invitee = browser.new_context()
    try:
        page = invitee.new_page()
        page.goto(link)
        expect(page.get_by_role("heading", name="Join Acme Research")).to_be_visible()
        page.get_by_label("Password", exact=True).fill(INVITEE_PASSWORD)
        page.get_by_label("Password again").fill(INVITEE_PASSWORD)
        page.get_by_role("button", name="Create my account and join").click()

        # In the team, on its overview, which offers Connect Bipsync (nothing is connected).
        expect(page).to_have_url(f"{site_url}/teams/acme/")
        expect(page.get_by_text("Welcome to Acme Research.")).to_be_visible()
        expect(page.get_by_text("You are a member of this team.")).to_be_visible()
        page.get_by_label("Bipsync site").fill(world.tenant)
        page.get_by_role("button", name="Connect Bipsync").click()

        # At the tenant's Bipsync pages (the sandbox), as the Bipsync member.
        expect(page.get_by_role("heading", name="Sign in to Bipsync")).to_be_visible()
        page.get_by_label("Email").fill(world.member.email)
        page.get_by_label("Password").fill(world.member.password)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="Approve").click()

        expect(page).to_have_url(re.compile(r"/teams/acme/connections/[0-9a-f-]{36}/$"))
        expect(page.locator("#status .status.active")).to_have_text("Active")
        body = page.content()

        # The link worked once: opened again it says so.
        again = page.goto(link)
        assert again is not None
        assert again.status == 410
        expect(page.get_by_text("This invitation was already used.")).to_be_visible()
    finally:
        invitee.close()

    dora = User.objects.get(email=INVITEE)
    assert dora.check_password(INVITEE_PASSWORD)
    assert Membership.objects.get(team=team, user=dora).role == Membership.Role.MEMBER
    connection = Connection.objects.get()
    assert (connection.user, connection.kind) == (dora, Connection.Kind.USER)
    assert connection.status == Connection.Status.ACTIVE
    assert connection.access_token is not None
    assert connection.access_token not in body
    assert api_accepts(world, connection.access_token)
