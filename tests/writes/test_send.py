"""The API client's write requests against a real local HTTP server that misbehaves on demand.

The token source here is a fixed token: these tests are about what is sent and when it is sent
again, and the token service is exercised against the sandbox in test_delivery.py. Redis (the
tenant's gate) is the real one.
"""

from __future__ import annotations

import uuid

import pytest

from bipsync_partner.sync.api import ApiError, BipsyncApi, OutcomeUnknown, RetryPolicy
from tests.support.stub_http import StubHTTPServer, StubResponse, stub_http

__all__ = ["stub_http"]


class FixedToken:
    def access_token(self) -> str:
        return "fixed-token"

    def refresh_after_rejection(self, rejected: str) -> str:
        return "fixed-token"


def client(stub: StubHTTPServer) -> BipsyncApi:
    return BipsyncApi(
        api_base=stub.url + "/api",
        tenant=f"t-{uuid.uuid4().hex[:8]}",
        tokens=FixedToken(),
        policy=RetryPolicy(attempts=3, backoff_base=0.01, backoff_cap=0.02),
        sleep=lambda _: None,
    )


def test_a_create_answered_with_a_server_error_is_not_sent_again_but_an_update_is(
    stub_http: StubHTTPServer,
) -> None:
    stub_http.route("POST", "/api/v2/research/note", StubResponse(status=502))
    stub_http.route(
        "PUT", "/api/v2/research/note/n1", StubResponse(status=500), StubResponse(body={"id": "n1"})
    )
    with client(stub_http) as api:
        with pytest.raises(OutcomeUnknown, match="may have acted"):
            api.send("POST", "/v2/research/note", json_body={"user": "u"})
        answer = api.send("PUT", "/v2/research/note/n1", json_body={"title": "t"}, idempotent=True)

    assert len(stub_http.requests_to("/api/v2/research/note")) == 1
    assert len(stub_http.requests_to("/api/v2/research/note/n1")) == 2
    assert answer == {"id": "n1"}


def test_a_validation_error_carries_bipsyncs_own_words(stub_http: StubHTTPServer) -> None:
    stub_http.route(
        "POST",
        "/api/v2/research/note",
        StubResponse(
            status=400, body={"error": "invalid_request", "error_description": "user is required."}
        ),
    )
    with client(stub_http) as api, pytest.raises(ApiError) as caught:
        api.send("POST", "/v2/research/note", json_body={})

    assert caught.value.transient is False
    assert caught.value.sentence.endswith("HTTP 400: user is required.")


def test_an_upload_to_a_signed_address_keeps_its_query_streams_and_sends_no_token(
    stub_http: StubHTTPServer,
) -> None:
    stub_http.route("PUT", "/bucket/file", StubResponse(body=b""))
    signed = stub_http.url + "/bucket/file?signature=abc&expires=1"
    chunks = [b"a" * 1000, b"b" * 24]
    with client(stub_http) as api:
        answer = api.send(
            "PUT",
            "/bucket/file",
            url=signed,
            body=lambda: iter(chunks),
            headers={"Content-Length": "1024"},
            idempotent=True,
            bearer=False,
        )

    [request] = stub_http.requests_to("/bucket/file")
    assert answer is None
    assert request.query == {"signature": ["abc"], "expires": ["1"]}
    assert "authorization" not in request.headers
    assert request.body == b"".join(chunks)
