from __future__ import annotations

import json
import logging
import sys

import pytest

from bipsync_partner.ops import context
from bipsync_partner.ops.logs import ContextFilter, JsonFormatter, RefusalFilter, redact


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer eyJhbGciOi.abc-def_123", "eyJhbGciOi.abc-def_123"),
        ("Authorization: Basic Y2xpZW50OnNlY3JldA==", "Y2xpZW50OnNlY3JldA=="),
        ('{"access_token": "at-secret-1", "expires_in": 3600}', "at-secret-1"),
        ("grant_type=refresh_token&refresh_token=rt-secret-2&client_id=x", "rt-secret-2"),
        ("client_secret=cs-secret-3", "cs-secret-3"),
        ("code_verifier: verifier-secret-4", "verifier-secret-4"),
        ("GET /connections/callback/?code=auth-code-5&state=s", "auth-code-5"),
    ],
)
def test_it_masks_secrets_in_log_text(text: str, secret: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned
    assert "[redacted]" in cleaned


def test_it_leaves_ordinary_text_alone() -> None:
    text = "Refreshed connection 42 for tenant acme in 120 ms (status_code=200)"
    assert redact(text) == text


def make_record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("test", logging.INFO, __file__, 1, message, args, None)


def test_it_writes_json_lines_with_request_and_connection_ids() -> None:
    record = make_record("refreshed %s", "ok")
    with context.bound(request="req-123", connection="conn-9"):
        ContextFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "refreshed ok"
    assert line["request_id"] == "req-123"
    assert line["connection_id"] == "conn-9"
    assert line["level"] == "INFO"


def test_it_masks_secrets_passed_as_arguments() -> None:
    record = make_record("token response %s", '{"refresh_token": "rt-very-secret"}')
    ContextFilter().filter(record)
    assert "rt-very-secret" not in JsonFormatter().format(record)


def test_it_resets_the_ids_after_the_block() -> None:
    with context.bound(connection="abc"):
        assert context.connection_id.get() == "abc"
    assert context.connection_id.get() == "-"


def request_record(logger: str, status: int, *, raised: bool) -> logging.LogRecord:
    try:
        raise RuntimeError("raised in a view")
    except RuntimeError:
        exc_info = sys.exc_info() if raised else None
    record = logging.LogRecord(
        logger, logging.WARNING, __file__, 1, "refused %s", ("/x",), exc_info
    )
    record.status_code = status
    return record


def test_a_refused_request_keeps_its_line_but_not_its_traceback() -> None:
    record = request_record("django.request", 403, raised=True)

    assert RefusalFilter().filter(record) is True
    assert "exception" not in json.loads(JsonFormatter().format(record))


def test_runserver_s_access_line_of_a_refused_request_is_dropped_but_not_others() -> None:
    assert RefusalFilter().filter(request_record("django.server", 404, raised=False)) is False
    assert RefusalFilter().filter(request_record("django.server", 200, raised=False)) is True


def test_a_server_error_keeps_its_traceback() -> None:
    record = request_record("django.request", 500, raised=True)

    assert RefusalFilter().filter(record) is True
    assert "raised in a view" in json.loads(JsonFormatter().format(record))["exception"]
