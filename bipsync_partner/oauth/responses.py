"""Strict reading of JSON bodies and of RFC 6749 §5.2 error responses.

Shared by discovery, the token endpoint, device authorization and revocation. Nothing here echoes a
body back into an exception message: an error body may quote what we sent, secrets included.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Final, NoReturn

from bipsync_partner.oauth._time import require_aware
from bipsync_partner.oauth.errors import (
    TERMINAL_ERROR_CODES,
    TRANSIENT_ERROR_CODES,
    ProtocolError,
    status_is_transient,
)

#: Retry-After values beyond a day are clamped: they are either a mistake or not worth waiting.
MAX_RETRY_AFTER: Final = 86_400.0

# RFC 6749 §5.2: error = 1*NQSCHAR, NQSCHAR = %x20-21 / %x23-5B / %x5D-7E
_ERROR_CODE: Final = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]+")


def _reject_constant(name: str) -> NoReturn:
    # NaN / Infinity are not JSON (RFC 8259 §6); Python's json accepts them by default.
    raise ValueError(f"non-standard JSON constant {name}")


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # RFC 8259 §4 leaves duplicate names undefined; two different access_tokens in one response
    # is not something to resolve silently.
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError("duplicate member name")
        result[key] = value
    return result


def describe_body(body: bytes, media_type: str) -> str:
    """A short, secret-free description of what a body looks like, for error messages."""
    if not body.strip():
        return "an empty body"
    stripped = body.lstrip()[:15].lower()
    if media_type == "text/html" or stripped.startswith((b"<!doctype", b"<html", b"<")):
        return "an HTML page"
    return f"a {media_type or 'untyped'} body of {len(body)} bytes"


def load_json_object(
    body: bytes,
    *,
    status: int | None,
    media_type: str = "",
    what: str = "response",
    retry_after: float | None = None,
) -> dict[str, object]:
    """Parse ``body`` as one UTF-8 JSON object, or raise ``ProtocolError`` (``invalid_response``,
    transient as every malformed body is)."""

    def fail(reason: str) -> NoReturn:
        raise ProtocolError(
            f"the {what} is not a JSON object: {reason}",
            error="invalid_response",
            status=status,
            retry_after=retry_after,
            transient=True,
        )

    if not body.strip():
        fail("an empty body")
    try:
        text = body.decode("utf-8")
        value = json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        fail(describe_body(body, media_type))
    if not isinstance(value, dict):
        fail(f"JSON {type(value).__name__}")
    return value


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """``Retry-After`` as seconds from ``now`` (RFC 9110 §10.2.3: delay-seconds or an HTTP-date),
    clamped to [0, one day]; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(int(value)), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    delta = (when - require_aware(now, "now")).total_seconds()
    return min(max(delta, 0.0), MAX_RETRY_AFTER)


def _optional_text(document: Mapping[str, object], key: str) -> str | None:
    value = document.get(key)
    return value if isinstance(value, str) and value else None


def error_from_response(
    status: int,
    body: bytes,
    *,
    media_type: str = "",
    retry_after: float | None = None,
    what: str = "error response",
) -> ProtocolError:
    """Build the ``ProtocolError`` for an RFC 6749 §5.2 error response (or for a body that should
    have been one).

    Classification: a code meaning "later" (``server_error``, ``temporarily_unavailable``,
    ``authorization_pending``, ``slow_down``) or a 5xx/429 status without a terminal code is
    transient; a malformed body is transient; everything else is terminal.
    """
    try:
        document = load_json_object(
            body, status=status, media_type=media_type, what=what, retry_after=retry_after
        )
    except ProtocolError as exc:
        return exc
    code = document.get("error")
    if not isinstance(code, str) or _ERROR_CODE.fullmatch(code) is None:
        return ProtocolError(
            f"the {what} has no valid 'error' member",
            error="invalid_response",
            status=status,
            retry_after=retry_after,
            transient=True,
        )
    transient = code in TRANSIENT_ERROR_CODES or (
        status_is_transient(status) and code not in TERMINAL_ERROR_CODES
    )
    return ProtocolError(
        _optional_text(document, "error_description"),
        error=code,
        uri=_optional_text(document, "error_uri"),
        hint=_optional_text(document, "hint"),
        status=status,
        retry_after=retry_after,
        transient=transient,
    )
