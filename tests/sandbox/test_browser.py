"""A person completes the authorization-code flow on the sandbox pages in a real browser.

Debian's chromium, driven by Playwright (never ``playwright install``). The partner's callback is
a stub HTTP server on a free port of the test's own, so the browser's redirect lands there over real
HTTP whatever else listens on the machine (``bin/run``'s app on 127.0.0.1:8000 included).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from tests.support.browser import chromium
from tests.support.sandbox import CALLBACK_PATH, Sandbox, make_world
from tests.support.stub_http import StubHTTPServer, StubResponse, stub_http

__all__ = ["stub_http"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.mark.browser
def test_a_person_signs_in_and_approves_in_a_real_browser(
    browser: Browser, sandbox: Sandbox, stub_http: StubHTTPServer
) -> None:
    world = make_world(sandbox, redirect_uri=stub_http.url + CALLBACK_PATH)
    app = world.user_app
    start = world.start(app, scope="rest_api:read rest_api:write")
    stub_http.route(
        "GET",
        CALLBACK_PATH,
        StubResponse(body="<p>Back at the partner</p>", content_type="text/html"),
    )

    context = browser.new_context()
    try:
        page = context.new_page()
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

    (arrived,) = stub_http.requests_to(CALLBACK_PATH)
    params = {key: values[0] for key, values in arrived.query.items()}
    assert params["state"] == start.state
    assert params["iss"] == world.api_base
    with world.http:
        response = world.exchange(app, params["code"], start.verifier)
    assert response.status_code == 200, response.text
    assert world.sandbox.introspect(response.json()["access_token"])["user_id"] == world.member.id
