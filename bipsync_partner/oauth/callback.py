"""Validation of the redirect back from the authorization endpoint (RFC 6749 §4.1.2).

:func:`validate_callback` checks, in order:

1. no parameter appears twice (RFC 6749 §3.1: "MUST NOT be included more than once");
2. ``state`` is present, and a pending authorization exists (none: unknown or already used);
3. ``state`` equals the pending one, compared in constant time
   (``hmac.compare_digest``; RFC 6749 §10.12 CSRF protection);
4. the pending authorization is younger than its lifetime;
5. ``iss`` (RFC 9207 §2.4) equals the issuer exactly, when the server advertised
   ``authorization_response_iss_parameter_supported`` or sent ``iss`` anyway;
6. an ``error`` redirect (``access_denied``...) becomes a :class:`CallbackDenied` *result*, not an
   exception, so the caller can show the description on a normal page;
7. otherwise a ``code`` must be present, visible ASCII and at most ``max_code_length``
   characters: :class:`CallbackSuccess`.

The server's ``error_description`` is clipped (it is shown to people and logged).

Failures of 1-5 and 7 raise :class:`~bipsync_partner.oauth.errors.CallbackError` (terminal).

Parameters are given as a raw query string or as a list of ``(name, value)`` pairs — never a
plain mapping, which would hide duplicates (Django: ``request.META["QUERY_STRING"]`` or
``[(k, v) for k, vs in request.GET.lists() for v in vs]``).
"""

from __future__ import annotations

import hmac
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Protocol
from urllib.parse import parse_qsl

from bipsync_partner.oauth.authorization import DEFAULT_PENDING_LIFETIME, PendingAuthorization
from bipsync_partner.oauth.errors import CallbackError, clip_text

CallbackParameters = str | Iterable[tuple[str, str]]

# RFC 6749 Appendix A.7 (error = 1*NQSCHAR) and A.11 (code = 1*VSCHAR).
_ERROR_CODE: Final = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]+")
_VSCHAR: Final = re.compile(r"[\x20-\x7e]+")
# RFC 6749 §4.1.2 leaves the code's size to the server ("SHOULD document the size of any value it
# issues"); Bipsync documents none. A bound keeps a forged 100 KB "code" from being posted on to
# the token endpoint; 2048 is far above any code seen in practice (the sandbox's are 48).
DEFAULT_MAX_CODE_LENGTH: Final = 2048


@dataclass(frozen=True)
class CallbackSuccess:
    """The server granted an authorization code. Code and state are kept out of the repr."""

    code: str = field(repr=False)
    state: str = field(repr=False)
    iss: str | None = None


@dataclass(frozen=True)
class CallbackDenied:
    """The server redirected back with an error (RFC 6749 §4.1.2.1): ``access_denied`` when the
    user (or a non-admin, for the service-account variation) declined, or another code."""

    error: str
    description: str | None = None
    uri: str | None = None

    @property
    def access_denied(self) -> bool:
        return self.error == "access_denied"


CallbackResult = CallbackSuccess | CallbackDenied


def parse_callback_parameters(parameters: CallbackParameters) -> dict[str, str]:
    """The callback's parameters as a dict, refusing any name given twice."""
    if isinstance(parameters, str):
        pairs: Iterable[tuple[str, str]] = parse_qsl(
            parameters.removeprefix("?"), keep_blank_values=True
        )
    elif isinstance(parameters, Mapping):
        # A Mapping (Django's QueryDict included) would silently keep one value per name.
        raise TypeError("pass the query string or a list of (name, value) pairs, not a mapping")
    else:
        pairs = parameters
    result: dict[str, str] = {}
    for pair in pairs:
        if not (
            isinstance(pair, tuple)
            and len(pair) == 2
            and isinstance(pair[0], str)
            and isinstance(pair[1], str)
        ):
            raise TypeError("callback parameters must be (name, value) string pairs")
        name, value = pair
        if name in result:
            raise CallbackError(
                f"the parameter {name!r} appears more than once", error="duplicate_parameter"
            )
        result[name] = value
    return result


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise CallbackError(f"the callback has no {name!r}", error="missing_parameter")
    return value


def _same(a: str, b: str) -> bool:
    # compare_digest refuses non-ASCII str; compare the UTF-8 bytes instead.
    return hmac.compare_digest(
        a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
    )


def validate_callback(
    parameters: CallbackParameters,
    pending: PendingAuthorization | None,
    *,
    now: datetime,
    lifetime: timedelta = DEFAULT_PENDING_LIFETIME,
    max_code_length: int = DEFAULT_MAX_CODE_LENGTH,
) -> CallbackResult:
    """Validate the authorization response against ``pending`` (``None`` when the caller found
    no pending authorization for this browser/state). See the module docstring for the rules."""
    params = parse_callback_parameters(parameters)
    state = _required(params, "state")
    if pending is None:
        raise CallbackError(
            "no authorization is pending for this response (unknown or already used state)",
            error="unknown_state",
        )
    if not _same(state, pending.state):
        raise CallbackError(
            "the state does not match the pending authorization", error="state_mismatch"
        )
    if pending.is_expired(now, lifetime):
        raise CallbackError(
            "the authorization took too long; please start again", error="expired_request"
        )
    iss = params.get("iss")
    if pending.iss_parameter_supported or iss is not None:
        # RFC 9207 §2.4: compare with simple string comparison; a missing iss from a server that
        # advertises it is a mix-up attack indicator as much as a wrong one.
        if iss is None:
            raise CallbackError("the callback has no 'iss'", error="missing_parameter")
        if iss != pending.issuer:
            raise CallbackError(
                "the response comes from another issuer than the one asked", error="iss_mismatch"
            )
    error = params.get("error")
    if error is not None:
        if "code" in params or _ERROR_CODE.fullmatch(error) is None:
            raise CallbackError("the error response is malformed", error="invalid_callback")
        return CallbackDenied(
            error=error,
            description=clip_text(params.get("error_description") or None),
            uri=params.get("error_uri") or None,
        )
    code = _required(params, "code")
    if len(code) > max_code_length:
        raise CallbackError(
            f"the authorization code is longer than {max_code_length} characters",
            error="invalid_callback",
        )
    if _VSCHAR.fullmatch(code) is None:
        raise CallbackError("the authorization code is malformed", error="invalid_callback")
    return CallbackSuccess(code=code, state=state, iss=iss)


class PendingAuthorizationStore(Protocol):
    """Where pending authorizations wait for their callback. ``take`` must remove what it returns
    (a state is good for one callback only)."""

    def put(self, pending: PendingAuthorization) -> None: ...

    def take(self, state: str) -> PendingAuthorization | None: ...


class InMemoryPendingStore:
    """A thread-safe :class:`PendingAuthorizationStore` for a single process (CLI, tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, PendingAuthorization] = {}

    def put(self, pending: PendingAuthorization) -> None:
        with self._lock:
            self._pending[pending.state] = pending

    def take(self, state: str) -> PendingAuthorization | None:
        with self._lock:
            return self._pending.pop(state, None)


def complete_callback(
    parameters: CallbackParameters,
    store: PendingAuthorizationStore,
    *,
    now: datetime,
    lifetime: timedelta = DEFAULT_PENDING_LIFETIME,
    max_code_length: int = DEFAULT_MAX_CODE_LENGTH,
) -> CallbackResult:
    """Take the pending authorization named by the response's ``state`` out of ``store`` (so a
    replayed response finds nothing) and validate the response against it."""
    params = parse_callback_parameters(parameters)
    state = params.get("state")
    pending = store.take(state) if state else None
    return validate_callback(
        list(params.items()),
        pending,
        now=now,
        lifetime=lifetime,
        max_code_length=max_code_length,
    )
