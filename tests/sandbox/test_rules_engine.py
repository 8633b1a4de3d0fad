"""The sandbox's Rules engine: a rule calls its URL with the Mustache body rendered from the
changed document, after the change committed, without the API call waiting for the receiver."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from bipsync_sandbox.api.mustache import render
from bipsync_sandbox.client import SandboxError
from tests.sandbox.research_api import Api, team_token
from tests.support.sandbox import Sandbox, SandboxWorld
from tests.support.stub_http import RecordedRequest, StubHTTPServer, StubResponse, stub_http

__all__ = ["stub_http"]

TEMPLATE = '{"event": "{{event}}", "document": "{{document._id}}", "title": "{{document.title}}"}'


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def create_note(world: SandboxWorld, title: str) -> str:
    response = Api(world, team_token(world)).post(
        "/v2/research/note", {"user": world.admin.id, "title": title}
    )
    assert response.status_code == 201, response.text
    note: str = response.json()["id"]
    return note


def test_a_rule_posts_its_rendered_body_when_a_note_is_created(
    sandbox: Sandbox, sandbox_world: SandboxWorld, stub_http: StubHTTPServer
) -> None:
    stub_http.route("POST", "/hook", StubResponse(status=202))
    rule = sandbox.create_rule(sandbox_world.tenant, stub_http.url + "/hook", TEMPLATE)

    note = create_note(sandbox_world, 'Q3 "preview" & more')

    wait_for(lambda: len(stub_http.requests_to("/hook")) == 1)
    call: RecordedRequest = stub_http.requests_to("/hook")[0]
    assert call.headers["content-type"] == "application/json"
    assert json.loads(call.body) == {
        "event": "created",
        "document": note,
        "title": "Q3 &quot;preview&quot; &amp; more",
    }
    wait_for(lambda: len(sandbox.rule_calls(sandbox_world.tenant)) == 1)
    assert sandbox.rule_calls(sandbox_world.tenant) == [
        {"rule": rule["id"], "event": "created", "document_id": note, "status": 202, "error": ""}
    ]


def test_rules_fire_on_edits_and_deletions_of_the_research(
    sandbox: Sandbox, sandbox_world: SandboxWorld, stub_http: StubHTTPServer
) -> None:
    world = sandbox_world
    sandbox.generate_research(world.tenant, world.team_id, 20, seed=5)
    stub_http.route("POST", "/hook", StubResponse(status=200))
    sandbox.create_rule(
        world.tenant,
        stub_http.url + "/hook",
        "<event><name>{{event}}</name><id>{{document._id}}</id></event>",
        events=["deleted"],
        content_type="application/xml",
    )

    changed = sandbox.mutate_research(world.tenant, world.team_id, 0.5, seed=6)

    wait_for(lambda: len(stub_http.requests_to("/hook")) == changed["deleted"])
    bodies = [call.body.decode() for call in stub_http.requests_to("/hook")]
    assert all(body.startswith("<event><name>deleted</name><id>") for body in bodies)
    assert changed["deleted"] > 0


def test_a_slow_receiver_does_not_hold_up_the_api_call(
    sandbox: Sandbox, sandbox_world: SandboxWorld, stub_http: StubHTTPServer
) -> None:
    stub_http.route("POST", "/slow", StubResponse(status=200, delay=2.0))
    sandbox.create_rule(sandbox_world.tenant, stub_http.url + "/slow", TEMPLATE)
    token = team_token(sandbox_world)
    started = time.monotonic()

    response = Api(sandbox_world, token).post(
        "/v2/research/note", {"user": sandbox_world.admin.id, "title": "Quick"}
    )

    assert response.status_code == 201
    assert time.monotonic() - started < 1.5
    wait_for(lambda: len(stub_http.requests_to("/slow")) == 1)


def test_a_rule_with_a_bad_address_or_event_is_refused_with_a_sentence(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    with pytest.raises(SandboxError, match="absolute http"):
        sandbox.create_rule(sandbox_world.tenant, "file:///etc/passwd", TEMPLATE)
    with pytest.raises(SandboxError, match="events"):
        sandbox.create_rule(sandbox_world.tenant, "http://127.0.0.1/x", TEMPLATE, events=["x"])


def test_the_renderer_substitutes_variables_and_escapes_as_mustache_does() -> None:
    context = {"event": "modified", "document": {"_id": "a" * 24, "title": "<b>R&D</b>"}}

    assert render("{{document._id}}|{{ document.title }}", context) == (
        "a" * 24 + "|&lt;b&gt;R&amp;D&lt;/b&gt;"
    )
    assert render("{{{document.title}}}|{{& document.title}}", context) == "<b>R&D</b>|<b>R&D</b>"
    assert render("{{document.missing.deep}}{{event}}", context) == "modified"
