"""Transport rules over a real socket: timeouts, redirects, size bounds, User-Agent, Bearer."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from bipsync_partner.oauth import (
    BearerAuth,
    ConfigurationError,
    HttpClient,
    TransportError,
    TransportSettings,
    create_httpx_client,
)
from bipsync_partner.oauth.version import __version__
from tests.support.stub_http import StubHTTPServer, StubResponse


def test_it_identifies_itself_with_a_versioned_user_agent(
    stub_http: StubHTTPServer, http: HttpClient
) -> None:
    stub_http.route("GET", "/x", StubResponse(body={"ok": True}))
    response = http.request("GET", stub_http.url + "/x")
    assert response.status == 200
    assert response.body == b'{"ok": true}'
    assert response.media_type == "application/json"
    assert stub_http.requests[0].headers["user-agent"] == f"bipsync-partner/{__version__}"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_it_refuses_to_follow_redirects(
    stub_http: StubHTTPServer, http: HttpClient, status: int
) -> None:
    stub_http.route(
        "POST", "/token", StubResponse(status=status, headers={"Location": "https://evil.test/"})
    )
    with pytest.raises(TransportError) as raised:
        http.request("POST", stub_http.url + "/token", data={"a": "b"})
    assert raised.value.error == "unexpected_redirect"
    assert raised.value.status == status
    assert not raised.value.transient
    assert len(stub_http.requests) == 1


def test_it_times_out_on_a_server_that_does_not_answer(
    stub_http: StubHTTPServer, http: HttpClient
) -> None:
    stub_http.route("GET", "/slow", StubResponse(body="late", delay=5))
    started = time.monotonic()
    with pytest.raises(TransportError) as raised:
        http.request("GET", stub_http.url + "/slow")
    assert raised.value.error == "timeout"
    assert raised.value.transient
    assert time.monotonic() - started < 2


def test_it_enforces_an_overall_deadline_on_a_dripping_body(stub_http: StubHTTPServer) -> None:
    # Each byte arrives within the read timeout, so only the overall deadline can stop this.
    stub_http.route("GET", "/drip", StubResponse(body="x" * 200, drip=0.05))
    settings = TransportSettings(timeout=1.0, total_timeout=0.3)
    started = time.monotonic()
    with HttpClient(settings) as http, pytest.raises(TransportError) as raised:
        http.request("GET", stub_http.url + "/drip")
    assert raised.value.error == "timeout"
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_it_stops_reading_an_oversize_body(
    stub_http: StubHTTPServer, http: HttpClient, declared: bool
) -> None:
    stub_http.route("GET", "/big", StubResponse(body="x" * 10_000, content_length=declared))
    with pytest.raises(TransportError) as raised:
        http.request("GET", stub_http.url + "/big")
    assert raised.value.error == "response_too_large"
    assert raised.value.transient


def test_it_accepts_a_body_exactly_at_the_limit(
    stub_http: StubHTTPServer, http: HttpClient
) -> None:
    stub_http.route("GET", "/edge", StubResponse(body="x" * 4096, content_length=False))
    assert len(http.request("GET", stub_http.url + "/edge").body) == 4096


def test_it_reports_a_refused_connection_as_a_transient_network_error(http: HttpClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransportError) as raised:
        http.request("GET", f"http://127.0.0.1:{port}/")
    assert raised.value.error == "network_error"
    assert raised.value.transient


def test_it_returns_error_statuses_for_the_caller_to_interpret(
    stub_http: StubHTTPServer, http: HttpClient
) -> None:
    stub_http.route("GET", "/e", StubResponse(status=503, body="<html>down</html>"))
    assert http.request("GET", stub_http.url + "/e").status == 503


def test_bearer_auth_sends_the_token_unaltered(stub_http: StubHTTPServer) -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abc-_+/="
    stub_http.route("GET", "/v1/research", StubResponse(body={"results": []}))
    with create_httpx_client() as client:
        client.get(stub_http.url + "/v1/research", auth=BearerAuth(token))
    assert stub_http.requests[0].headers["authorization"] == f"Bearer {token}"


def test_the_httpx_client_factory_disables_redirects_and_sets_timeouts() -> None:
    with create_httpx_client(TransportSettings(timeout=3)) as client:
        assert client.follow_redirects is False
        assert client.timeout == httpx.Timeout(3)
        assert client.headers["user-agent"].startswith("bipsync-partner/")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("a b", id="space"),
        pytest.param("abc\r\nX-Evil: 1", id="header-injection"),
        pytest.param("tökén", id="non-ascii"),
    ],
)
def test_bearer_auth_refuses_tokens_that_cannot_go_into_a_header_unaltered(token: str) -> None:
    with pytest.raises(ConfigurationError):
        BearerAuth(token)


def test_bearer_auth_hides_the_token_in_its_repr() -> None:
    assert "sekrit" not in repr(BearerAuth("sekrit"))
