"""Every door of the running sandbox (gunicorn, real HTTP), asked badly, answers without a 5xx.

The sandbox stands in for Bipsync in demos and tests, and people reach its pages in a browser: its
sign-in, consent and device pages, its OAuth endpoints and its REST slice each get junk (NUL
characters, wrong types, overlong values, broken JSON, bad credentials) from an anonymous visitor
and from a signed-in user whose forms carry a valid CSRF token, so the views' own logic is reached.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.sandbox.research_api import team_token
from tests.support.sandbox import Sandbox, SandboxWorld

JUNK: dict[str, list[str]] = {
    "client_id": ["nope", "x" * 600, ""],
    "redirect_uri": ["javascript:alert(1)", "http://[::1", "https://evil.example/cb"],
    "response_type": ["token", "code", "code id_token"],
    "scope": ["team_x rest_api:read", "rest_api:write" * 40, ""],
    "state": ["s", "x" * 600, ""],
    "code_challenge": ["short", "A" * 200, "!!!!"],
    "code_challenge_method": ["plain", "S512", "S256"],
    "grant_type": ["refresh_token", "authorization_code", "urn:ietf:params:oauth:grant-type:x"],
    "code": ["x", "y" * 600, ""],
    "refresh_token": ["x", "", "z" * 600],
    "device_code": ["x", "", "d" * 600],
    "code_verifier": ["short", "v" * 200, "~"],
    "user_code": ["ABCD-EFGH", "x" * 600, "----"],
    "token": ["x", "", "t" * 600],
    "token_type_hint": ["access_token", "bogus", "refresh_token"],
    "email": ["not-an-email", "a@b.c", "A@B.C "],
    "password": ["", "x" * 600, "p"],
    "next": ["https://evil.example/", "//evil.example", "/\\evil.example"],
    "decision": ["approve", "deny", "maybe"],
    "approve": ["1", "yes", ""],
    "offset": ["-1", "abc", "99999999999999999999"],
    "limit": ["0", "-5", "1e309"],
    "contentType": ["zz", "", "5f0c9a1b2c3d4e5f60718293"],
}
# Each variant takes one value per name; the last puts a NUL into every value.
NUL = len(max(JUNK.values(), key=len))
VARIANTS = NUL + 1
WEB_PAGES = ("/", "/login", "/logout", "/oauth/authorize", "/oauth/device")
API_POSTS = ("/v1/oauth/token", "/v1/oauth/device", "/v1/oauth/revoke")
API_GETS = (
    "/.well-known/oauth-authorization-server",
    "/v1/research",
    "/v1/contenttype",
    "/v1/field",
)
BAD_AUTH = [
    {},
    {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:\x00").decode()},
    {"Authorization": "Basic !!!not-base64"},
    {"Authorization": "Bearer not-a-token"},
]


def junk(variant: int) -> dict[str, str]:
    if variant == NUL:
        return {name: values[0] + "\x00" for name, values in JUNK.items()}
    return {name: values[variant % len(values)] for name, values in JUNK.items()}


def csrf_of(page: httpx.Response) -> str:
    marker = 'name="csrfmiddlewaretoken" value="'
    if marker not in page.text:
        return ""
    return page.text.split(marker, 1)[1].split('"', 1)[0]


class Crawl:
    """Sends requests and keeps every one that answered 5xx, so one run lists them all."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.statuses: set[int] = set()

    def send(self, client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = client.request(method, url, **kwargs)
        self.statuses.add(response.status_code)
        if response.status_code >= 500:
            fields = sorted({**kwargs.get("params", {}), **kwargs.get("data", {})}.items())
            shown = {name: value[:12] for name, value in fields if isinstance(value, str)}
            self.failures.append(f"{method} {url.split('/t/')[-1]} {response.status_code} {shown}")
        return response


@pytest.fixture
def browsers(sandbox: Sandbox, sandbox_world: SandboxWorld) -> Iterator[dict[str, httpx.Client]]:
    anonymous = httpx.Client(timeout=30.0)
    world = sandbox_world
    with sandbox.sign_in(world.tenant, world.member.email, world.member.password) as signed_in:
        yield {"anonymous": anonymous, "signed in": signed_in}
    anonymous.close()


def test_no_sandbox_page_answers_a_server_error(
    sandbox: Sandbox, sandbox_world: SandboxWorld, browsers: dict[str, httpx.Client]
) -> None:
    crawl = Crawl()
    bases = [sandbox_world.web_base, sandbox.web_base("no-such-tenant")]
    forms = 0
    for base, page, variant in itertools.product(bases, WEB_PAGES, range(VARIANTS)):
        for browser in browsers.values():
            shown = crawl.send(browser, "GET", base + page, params=junk(variant))
            token = csrf_of(shown)
            forms += bool(token)
            form = {**junk(variant), "csrfmiddlewaretoken": token}
            crawl.send(browser, "POST", base + page, params=junk(variant), data=form)

    assert crawl.failures == []
    # Forms were shown and the junk POSTs carried their tokens past the CSRF check.
    assert forms > 0
    assert {200, 400}.issubset(crawl.statuses)


def test_no_sandbox_endpoint_answers_a_server_error(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    crawl = Crawl()
    bearer = {"Authorization": f"Bearer {team_token(sandbox_world)}"}
    json_bodies = (b"\xff\x00{", b"[]", b'{"user": "\\u0000", "title": 5}', b'{"user": null}')
    bases = [sandbox_world.api_base, sandbox.api_base("no-such-tenant")]
    with httpx.Client(timeout=30.0) as http:
        for base, variant, headers in itertools.product(bases, range(VARIANTS), BAD_AUTH):
            for path in API_POSTS:
                crawl.send(http, "POST", base + path, data=junk(variant), headers=headers)
                broken = {**headers, "Content-Type": "application/json"}
                crawl.send(http, "POST", base + path, content=json_bodies[0], headers=broken)
            for path, auth in itertools.product(API_GETS, (headers, bearer)):
                crawl.send(http, "GET", base + path, params=junk(variant), headers=auth)
            for body in json_bodies:
                as_json = {**bearer, "Content-Type": "application/json"}
                crawl.send(http, "POST", base + "/v2/research/note", content=body, headers=as_json)

    assert crawl.failures == []
    # The junk met the endpoints' own checks, not only a door that was shut.
    assert {200, 400, 401, 404}.issubset(crawl.statuses)


def test_unreadable_basic_credentials_are_invalid_client(sandbox_world: SandboxWorld) -> None:
    unreadable = base64.b64encode(b"\xff\xfe:secret").decode()
    response = sandbox_world.http.post(
        sandbox_world.token_url,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {unreadable}"},
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_a_nul_in_a_parameter_is_an_invalid_request(sandbox_world: SandboxWorld) -> None:
    api = sandbox_world.http.post(
        sandbox_world.token_url, data={"grant_type": "refresh_token", "refresh_token": "a\x00b"}
    )
    page = sandbox_world.http.get(sandbox_world.web_base + "/oauth/authorize?client_id=%00")

    assert api.status_code == 400
    assert api.json()["error"] == "invalid_request"
    assert page.status_code == 400
    assert "NUL" in page.text
