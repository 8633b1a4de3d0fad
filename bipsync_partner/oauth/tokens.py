"""Token responses parsed strictly (RFC 6749 §5.1), and the :class:`Token` they produce.

:func:`parse_token_response` looks at the HTTP status first (anything but 200 is an RFC 6749 §5.2
error response, or a malformed one), then requires one JSON object, then:

- ``access_token``: required, non-empty visible ASCII (it goes into a header unaltered);
- ``token_type``: required, compared case-insensitively with ``bearer`` (RFC 6749 §5.1; Bipsync's
  example writes ``bearer``); any other type, e.g. ``mac``, is ``unsupported_token_type``;
- ``expires_in``: an integer or a string of digits (booleans, floats, negatives refused), turned
  into an absolute ``expires_at`` from *our* receive time, passed in (so a slow network errs on
  the side of refreshing early);
- ``refresh_token``: optional, visible ASCII;
- ``scope``: optional; when absent the granted scope is the requested one (RFC 6749 §5.1).

A 200 answer that fails these checks but carries a well-formed ``refresh_token`` raises
:class:`~bipsync_partner.oauth.errors.UnusableTokenResponse` holding it: a server that rotates
refresh tokens has already revoked the one that was sent.

Unknown members are ignored for validation (RFC 6749 §5.1), but short, printable string-valued
ones are kept in :attr:`Token.extra` so that callers can read a server's additional parameters
(e.g. the sandbox's ``subject``, a configurable [choice]) without this module knowing them. Every failure is an ``OAuthError``; a property test
checks that nothing else escapes, whatever the bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Final, NoReturn

from bipsync_partner.oauth._time import require_aware
from bipsync_partner.oauth.errors import ProtocolError, UnusableTokenResponse
from bipsync_partner.oauth.responses import error_from_response, load_json_object
from bipsync_partner.oauth.scopes import is_scope_token
from bipsync_partner.oauth.transport import BearerAuth

#: Longer than any real token lifetime; beyond it the value is nonsense (and would overflow).
MAX_EXPIRES_IN: Final = 10 * 366 * 24 * 3600
#: Default safety margin for "is this access token still good for one more request?".
DEFAULT_LEEWAY: Final = timedelta(seconds=60)
#: The members RFC 6749 §5.1 defines; everything else is an additional parameter.
STANDARD_MEMBERS: Final = frozenset(
    {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
)
#: Additional string parameters longer than this are not kept (they are not identifiers).
MAX_EXTRA_LENGTH: Final = 500


@dataclass(frozen=True, repr=False)
class Token:
    """A parsed token response. ``access_token`` and ``refresh_token`` never appear in its
    repr or str.

    Attributes:
        access_token: the opaque access token (Bipsync's look like JWTs; do not decode them).
        token_type: always ``"Bearer"`` (normalised).
        expires_at: absolute expiry, or None when the server gave no ``expires_in``.
        refresh_token: the refresh token, or None (client credentials have none).
        scopes: the granted scopes.
        received_at: when we received the response (our clock).
        extra: the response's additional string parameters (RFC 6749 §5.1 allows them), e.g.
            who the token acts as; never shown in the repr.
    """

    access_token: str
    token_type: str
    expires_at: datetime | None
    refresh_token: str | None
    scopes: tuple[str, ...]
    received_at: datetime
    extra: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), compare=False)

    def is_expired(self, now: datetime, leeway: timedelta = DEFAULT_LEEWAY) -> bool:
        """True when the token is expired at ``now`` or will be within ``leeway``."""
        if self.expires_at is None:
            return False
        return require_aware(now, "now") + leeway >= self.expires_at

    def expires_in(self, now: datetime) -> float | None:
        """Seconds left at ``now`` (negative once expired), or None when unknown."""
        if self.expires_at is None:
            return None
        return (self.expires_at - require_aware(now, "now")).total_seconds()

    @property
    def has_refresh_token(self) -> bool:
        return self.refresh_token is not None

    def with_refresh_token(self, refresh_token: str | None) -> Token:
        return dataclasses.replace(self, refresh_token=refresh_token)

    def bearer_auth(self) -> BearerAuth:
        """An ``httpx.Auth`` that sends this access token."""
        return BearerAuth(self.access_token)

    def __repr__(self) -> str:
        expires = self.expires_at.isoformat() if self.expires_at else None
        return (
            f"Token(token_type={self.token_type!r}, expires_at={expires!r}, "
            f"scopes={self.scopes!r}, has_refresh_token={self.has_refresh_token!r})"
        )

    __str__ = __repr__


def _malformed(reason: str, status: int) -> NoReturn:
    raise ProtocolError(
        f"the token response is malformed: {reason}",
        error="invalid_response",
        status=status,
        transient=True,
    )


def _visible_ascii(value: str) -> bool:
    return bool(value) and all("\x21" <= ch <= "\x7e" for ch in value)


def parse_expires_in(value: object) -> int | None:
    """``expires_in`` as whole seconds: an int (not a bool) or a string of ASCII digits, between 0
    and ``MAX_EXPIRES_IN``. None when absent. Raises ``ValueError`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool):
        # bool is an int subclass in Python: `true` must not become one second.
        raise ValueError("a boolean is not a lifetime")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and 0 < len(value) <= 12 and value.isascii() and value.isdigit():
        seconds = int(value)
    else:
        raise ValueError("not an integer")
    if not 0 <= seconds <= MAX_EXPIRES_IN:
        raise ValueError("out of range")
    return seconds


def parse_token_document(
    document: Mapping[str, object],
    *,
    status: int,
    received_at: datetime,
    requested_scopes: Iterable[str],
) -> Token:
    """Validate a decoded successful token response (RFC 6749 §5.1) into a :class:`Token`."""
    access_token = document.get("access_token")
    if not isinstance(access_token, str) or not _visible_ascii(access_token):
        _malformed("access_token is missing or not a visible-ASCII string", status)

    token_type = document.get("token_type")
    if not isinstance(token_type, str) or not token_type:
        _malformed("token_type is missing", status)
    if token_type.casefold() != "bearer":
        raise ProtocolError(
            "the server issued a token type other than Bearer, which this client cannot use",
            error="unsupported_token_type",
            status=status,
            transient=False,
        )

    try:
        expires_in = parse_expires_in(document.get("expires_in"))
    except ValueError:
        _malformed("expires_in is not a non-negative integer", status)

    refresh_token = document.get("refresh_token")
    if refresh_token is not None and (
        not isinstance(refresh_token, str) or not _visible_ascii(refresh_token)
    ):
        _malformed("refresh_token is not a visible-ASCII string", status)

    scope = document.get("scope")
    if scope is None:
        scopes = tuple(requested_scopes)  # RFC 6749 §5.1: omitted means "as requested"
    elif isinstance(scope, str):
        scopes = tuple(item for item in scope.split(" ") if item)
        if not all(is_scope_token(item) for item in scopes):
            _malformed("scope holds characters RFC 6749 §3.3 does not allow", status)
    else:
        _malformed("scope is not a string", status)

    extra = {
        name: value
        for name, value in document.items()
        if name not in STANDARD_MEMBERS
        and isinstance(value, str)
        and 0 < len(value) <= MAX_EXTRA_LENGTH
        and value.isprintable()
    }
    return Token(
        access_token=access_token,
        token_type="Bearer",
        expires_at=received_at + timedelta(seconds=expires_in) if expires_in is not None else None,
        refresh_token=refresh_token,
        scopes=scopes,
        received_at=received_at,
        extra=MappingProxyType(extra),
    )


def parse_token_response(
    status: int,
    body: bytes,
    *,
    received_at: datetime,
    requested_scopes: Iterable[str] = (),
    media_type: str = "",
    retry_after: float | None = None,
) -> Token:
    """Interpret a token endpoint response; raise a ``ProtocolError`` for anything but a valid
    successful one (the server's own error, classified; or ``invalid_response`` /
    ``unsupported_token_type``)."""
    require_aware(received_at, "received_at")
    if status != 200:
        raise error_from_response(
            status, body, media_type=media_type, retry_after=retry_after, what="token response"
        )
    document = load_json_object(body, status=status, media_type=media_type, what="token response")
    if "error" in document:
        # Some servers answer 200 with an error body; it is still an error.
        raise error_from_response(
            status, body, media_type=media_type, retry_after=retry_after, what="token response"
        )
    try:
        return parse_token_document(
            document, status=status, received_at=received_at, requested_scopes=requested_scopes
        )
    except ProtocolError as exc:
        # A rotating server revoked the refresh token that was sent when it answered 200: the
        # one in this answer is the only live one, however unusable the rest is.
        refresh_token = document.get("refresh_token")
        if isinstance(refresh_token, str) and _visible_ascii(refresh_token):
            raise UnusableTokenResponse(exc, refresh_token=refresh_token) from None
        raise
