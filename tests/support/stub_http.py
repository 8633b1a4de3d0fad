"""A real, tiny HTTP server on 127.0.0.1 for tests that need misbehaving HTTP.

The sandbox is a well-behaved Bipsync; protocol-level tests also need servers that answer with an
HTML page, an empty body, a redirect, a huge body or nothing at all for a while. Those responses
come from this server over a real socket, so the client's httpx transport, timeouts, streaming
and size limits are exercised exactly as in production (no mocks).

    def test_x(stub_http: StubHTTPServer) -> None:
        stub_http.route("POST", "/token", StubResponse(status=200, body={"access_token": "a"}))
        ... client.request("POST", stub_http.url + "/token") ...
        assert stub_http.requests[0].form["grant_type"] == ["refresh_token"]

A route answers with its responses in order and repeats the last one. A response may be a
callable taking the :class:`RecordedRequest` (for answers that depend on the request).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass
class StubResponse:
    """What the stub sends back.

    ``body`` may be bytes, str (sent as UTF-8) or any other JSON value (serialised, with
    ``application/json``). ``delay`` waits before the status line; ``drip`` sends the body one
    byte at a time with that many seconds between bytes; ``content_length=False`` omits the
    header and closes the connection after the body (so the size is unknown up front).
    """

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    delay: float = 0.0
    drip: float | None = None
    content_length: bool = True

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, self.content_type or "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode("utf-8"), self.content_type or "text/plain; charset=utf-8"
        return json.dumps(self.body).encode("utf-8"), self.content_type or "application/json"


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, list[str]]:
        """The body parsed as application/x-www-form-urlencoded."""
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True)


Responder = StubResponse | Callable[[RecordedRequest], StubResponse]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, stub: StubHTTPServer) -> None:
        self.stub = stub
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return  # keep test output clean

    def _handle(self) -> None:
        stub = self.server.stub
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = RecordedRequest(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        responder = stub._next_response(request)
        response = responder(request) if callable(responder) else responder
        if response.delay and stub.stopping.wait(response.delay):
            return
        payload, content_type = response.encoded()
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", content_type)
            if response.content_length:
                self.send_header("Content-Length", str(len(payload)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if response.drip is None:
                self.wfile.write(payload)
            else:
                for index in range(len(payload)):
                    self.wfile.write(payload[index : index + 1])
                    self.wfile.flush()
                    if stub.stopping.wait(response.drip):
                        return
        except (BrokenPipeError, ConnectionResetError):
            return  # the client gave up (timeouts, size limits): that is the point of the test

    do_GET = _handle
    do_POST = _handle
    do_PUT = _handle
    do_DELETE = _handle


class StubHTTPServer:
    """A threaded HTTP server on a free port of 127.0.0.1; see the module docstring."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.requests: list[RecordedRequest] = []
        self._routes: dict[tuple[str, str], list[Responder]] = {}
        self._lock = threading.Lock()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def route(self, method: str, path: str, *responses: Responder) -> None:
        """Answer ``method path`` with ``responses`` in order, repeating the last."""
        if not responses:
            raise ValueError("a route needs at least one response")
        with self._lock:
            self._routes[(method.upper(), path)] = list(responses)

    def _next_response(self, request: RecordedRequest) -> Responder:
        with self._lock:
            self.requests.append(request)
            queue = self._routes.get((request.method, request.path))
            if not queue:
                return StubResponse(status=404, body="no such stub route")
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def start(self) -> StubHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def stub_http() -> Iterator[StubHTTPServer]:
    """A fresh stub server per test (starting one takes about a millisecond)."""
    server = StubHTTPServer().start()
    try:
        yield server
    finally:
        server.stop()
