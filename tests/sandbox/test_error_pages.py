"""The sandbox's own 404, 403 and 500 pages and its root page, from the running sandbox."""

from __future__ import annotations

import subprocess
import sys

import httpx

from tests.support.sandbox import REPO_ROOT, Sandbox, SandboxWorld

# Every sandbox page extends sandbox/base.html, whose header names the sandbox.
LAYOUT = "Bipsync <small>sandbox"


def test_an_unknown_address_gets_the_sandbox_s_styled_not_found_page(sandbox: Sandbox) -> None:
    response = httpx.get(sandbox.base_url + "/no-such-page")

    assert response.status_code == 404
    assert LAYOUT in response.text
    assert "<h1>Not found</h1>" in response.text


def test_a_sign_in_without_its_csrf_token_gets_the_sandbox_s_styled_forbidden_page(
    sandbox_world: SandboxWorld,
) -> None:
    response = httpx.post(
        sandbox_world.web_base + "/login", data={"email": "a@example.com", "password": "x"}
    )

    assert response.status_code == 403
    assert LAYOUT in response.text
    assert "This form has expired" in response.text


def render_with_the_sandbox_settings(sandbox: Sandbox, handler: str) -> str:
    """Django's own error handler, called in a process with the sandbox's settings: nothing in
    the sandbox raises PermissionDenied or fails on purpose, and its pages over HTTP are crawled
    for server errors (tests/sandbox/test_no_server_errors.py)."""
    code = (
        "from django.core.exceptions import PermissionDenied\n"
        "from django.test import RequestFactory\n"
        "from django.views import defaults\n"
        "request = RequestFactory().get('/')\n"
        f"response = {handler}\n"
        "print(response.status_code)\n"
        "print(response.content.decode())\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "bipsync_sandbox", "shell", "--no-imports", "-c", code],
        cwd=REPO_ROOT,
        env=sandbox.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_the_sandbox_s_server_error_page_is_its_own(sandbox: Sandbox) -> None:
    page = render_with_the_sandbox_settings(sandbox, "defaults.server_error(request)")

    assert page.startswith("500\n")
    assert LAYOUT in page
    assert "<h1>Something went wrong</h1>" in page


def test_the_sandbox_s_forbidden_page_is_its_own(sandbox: Sandbox) -> None:
    page = render_with_the_sandbox_settings(
        sandbox, "defaults.permission_denied(request, PermissionDenied('Not your team.'))"
    )

    assert page.startswith("403\n")
    assert LAYOUT in page
    assert "Not your team." in page


def test_the_sandbox_s_root_page_says_what_it_is_and_links_its_tenants(
    sandbox_world: SandboxWorld,
) -> None:
    response = httpx.get(sandbox_world.sandbox.base_url + "/")

    assert response.status_code == 200
    assert LAYOUT in response.text
    assert "emulates" in response.text
    assert sandbox_world.sandbox.web_template in response.text
