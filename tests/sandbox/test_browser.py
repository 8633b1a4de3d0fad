"""A person completes the authorization-code flow on the sandbox pages in a real browser.

Debian's chromium, driven by Playwright (never ``playwright install``). The partner's redirect URI
is intercepted in the browser (``page.route``), so nothing needs to listen on it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Route

from tests.support.browser import chromium
from tests.support.sandbox import SandboxWorld, query_of


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.mark.browser
def test_a_person_signs_in_and_approves_in_a_real_browser(
    browser: Browser, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    app = world.user_app
    start = world.start(app, scope="rest_api:read rest_api:write")
    arrived: list[str] = []

    def capture(route: Route) -> None:
        arrived.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body="<p>Back at the partner</p>")

    context = browser.new_context()
    try:
        page = context.new_page()
        page.route(f"{app.redirect_uri}**", capture)
        page.goto(start.url)

        assert page.get_by_role("heading", name="Sign in to Bipsync").is_visible()
        page.get_by_label("Email").fill(world.member.email)
        page.get_by_label("Password").fill(world.member.password)
        page.get_by_role("button", name="Sign in").click()

        heading = page.get_by_role(
            "heading", name="Allow Partner Sync to use your Bipsync account?"
        )
        heading.wait_for()
        assert page.get_by_text("Create, change and delete research").is_visible()
        page.get_by_role("button", name="Approve").click()
        page.get_by_text("Back at the partner").wait_for()
    finally:
        context.close()

    assert len(arrived) == 1
    params = query_of(arrived[0])
    assert params["state"] == start.state
    assert params["iss"] == world.api_base
    response = world.exchange(app, params["code"], start.verifier)
    assert response.status_code == 200, response.text
    assert world.sandbox.introspect(response.json()["access_token"])["user_id"] == world.member.id
