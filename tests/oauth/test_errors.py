from __future__ import annotations

import pytest

from bipsync_partner.oauth import OAuthError, ProtocolError, TransportError
from bipsync_partner.oauth.responses import error_from_response, parse_retry_after
from tests.oauth.conftest import NOW


@pytest.mark.parametrize(
    ("status", "body", "error", "transient"),
    [
        pytest.param(400, b'{"error":"invalid_grant"}', "invalid_grant", False, id="invalid_grant"),
        pytest.param(
            401, b'{"error":"invalid_client"}', "invalid_client", False, id="invalid_client"
        ),
        pytest.param(400, b'{"error":"invalid_scope"}', "invalid_scope", False, id="invalid_scope"),
        pytest.param(
            400, b'{"error":"unauthorized_client"}', "unauthorized_client", False, id="unauthorized"
        ),
        pytest.param(400, b'{"error":"access_denied"}', "access_denied", False, id="access_denied"),
        pytest.param(400, b'{"error":"expired_token"}', "expired_token", False, id="expired_token"),
        pytest.param(
            400, b'{"error":"authorization_pending"}', "authorization_pending", True, id="pending"
        ),
        pytest.param(400, b'{"error":"slow_down"}', "slow_down", True, id="slow_down"),
        pytest.param(
            503,
            b'{"error":"temporarily_unavailable"}',
            "temporarily_unavailable",
            True,
            id="temporarily_unavailable",
        ),
        pytest.param(500, b'{"error":"server_error"}', "server_error", True, id="server_error"),
        pytest.param(429, b'{"error":"too_many"}', "too_many", True, id="429-unknown-code"),
        pytest.param(400, b'{"error":"something_new"}', "something_new", False, id="400-unknown"),
        pytest.param(500, b'{"error":"invalid_grant"}', "invalid_grant", False, id="500-terminal"),
        pytest.param(502, b"<html>Bad gateway</html>", "invalid_response", True, id="html-502"),
        pytest.param(400, b"<!DOCTYPE html><p>oops", "invalid_response", True, id="html-400"),
        pytest.param(400, b"", "invalid_response", True, id="empty"),
        pytest.param(400, b"[]", "invalid_response", True, id="array"),
        pytest.param(400, b'{"error": 7}', "invalid_response", True, id="error-not-string"),
        pytest.param(400, b'{"error": "a\\"b"}', "invalid_response", True, id="error-bad-chars"),
    ],
)
def test_it_classifies_error_responses(
    status: int, body: bytes, error: str, transient: bool
) -> None:
    exc = error_from_response(status, body)
    assert isinstance(exc, ProtocolError)
    assert exc.error == error
    assert exc.status == status
    assert exc.transient is transient
    assert exc.terminal is not transient


def test_it_carries_the_rfc_fields_and_hint() -> None:
    exc = error_from_response(
        400,
        b'{"error":"invalid_grant","error_description":"The refresh token is revoked",'
        b'"error_uri":"https://docs.bipsync.com/x","hint":"Token has been revoked"}',
        retry_after=3.0,
    )
    assert exc.description == "The refresh token is revoked"
    assert exc.uri == "https://docs.bipsync.com/x"
    assert exc.hint == "Token has been revoked"
    assert exc.retry_after == 3.0
    assert str(exc) == "invalid_grant: The refresh token is revoked (HTTP 400)"


def test_it_never_puts_the_body_of_a_malformed_response_into_the_message() -> None:
    exc = error_from_response(500, b"<html>access_token=SECRET123</html>")
    assert "SECRET123" not in str(exc)
    assert "SECRET123" not in repr(exc)
    assert "HTML" in str(exc)


def test_it_clips_very_long_server_descriptions() -> None:
    exc = OAuthError("x" * 10_000)
    assert exc.description is not None
    assert len(exc.description) <= 500


def test_transport_errors_are_transient_unless_said_otherwise() -> None:
    assert TransportError(error="timeout").transient
    assert not TransportError(error="unexpected_redirect", transient=False).transient


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("120", 120.0, id="seconds"),
        pytest.param("Thu, 02 Jan 2025 03:05:05 GMT", 60.0, id="http-date"),
        pytest.param("Thu, 02 Jan 2025 03:00:00 GMT", 0.0, id="past-date"),
        pytest.param("9999999999", 86_400.0, id="clamped"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("-5", None, id="negative"),
    ],
)
def test_it_reads_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected
