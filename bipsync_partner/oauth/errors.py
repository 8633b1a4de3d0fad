"""One exception family for everything the OAuth core can refuse.

Every error raised by :mod:`bipsync_partner.oauth` is an :class:`OAuthError`. It carries the RFC 6749
§5.2 fields (``error``, ``description``, ``uri``), Bipsync's probable ``hint``, the HTTP ``status``
and a ``retry_after`` in seconds, and it is classified once, here, as *transient* (worth retrying
later: network, timeout, 5xx, 429, an HTML or malformed body) or *terminal* (retrying the same
request cannot help: ``invalid_grant``, ``invalid_client``, ``access_denied``...). Callers decide by
``.transient`` and ``.error``, never by parsing messages.

Messages never contain tokens, codes, verifiers or secrets: they are built from the error code, the
server's description (which the server writes for humans) and the HTTP status only.
"""

from __future__ import annotations

from typing import Final

# RFC 6749 §5.2, RFC 8628 §3.5 and RFC 7009 §2.2.1 error codes that repeating the same request
# cannot fix. Anything the server returns that is not listed here and not a 5xx/429 is also
# treated as terminal: an unknown error code is not a reason to hammer the server.
TERMINAL_ERROR_CODES: Final = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "unsupported_response_type",
        "invalid_scope",
        "access_denied",
        "expired_token",
        "unsupported_token_type",
    }
)

# Codes whose whole meaning is "ask again later": RFC 6749 §4.1.2.1 (server_error,
# temporarily_unavailable) and RFC 8628 §3.5 (authorization_pending, slow_down).
TRANSIENT_ERROR_CODES: Final = frozenset(
    {"server_error", "temporarily_unavailable", "authorization_pending", "slow_down"}
)

# Server-supplied descriptions are shown to people and logged; keep them bounded.
_MAX_TEXT = 500


def clip_text(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) > _MAX_TEXT:
        return value[: _MAX_TEXT - 1] + "…"
    return value


def status_is_transient(status: int | None) -> bool:
    """5xx and 429 are worth retrying later (Bipsync reference, "Errors")."""
    return status is not None and (status >= 500 or status == 429)


class OAuthError(Exception):
    """Base of every error the OAuth core raises.

    Attributes:
        error: an RFC 6749 error code from the server, or one of ours (documented on each subclass).
        description: human-readable text (the server's ``error_description`` or ours), or None.
        uri: the server's ``error_uri``, or None.
        hint: Bipsync's ``hint`` field, when present.
        status: the HTTP status of the response that caused the error, or None.
        retry_after: seconds to wait before retrying (from ``Retry-After``), or None.
        transient: True when retrying the same request later may succeed.
    """

    #: Default ``error`` code of the class when none is given.
    default_error: str = "oauth_error"
    #: Default classification of the class when no status or code decides it.
    default_transient: bool = False

    def __init__(
        self,
        description: str | None = None,
        *,
        error: str | None = None,
        uri: str | None = None,
        hint: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        transient: bool | None = None,
    ) -> None:
        self.error: str = error or self.default_error
        self.description: str | None = clip_text(description)
        self.uri: str | None = clip_text(uri)
        self.hint: str | None = clip_text(hint)
        self.status: int | None = status
        self.retry_after: float | None = retry_after
        self._transient = transient
        super().__init__(self._message())

    @property
    def transient(self) -> bool:
        """Whether repeating the request later may succeed (network, timeout, 5xx, 429...)."""
        if self._transient is not None:
            return self._transient
        if self.error in TERMINAL_ERROR_CODES:
            return False
        if self.error in TRANSIENT_ERROR_CODES or status_is_transient(self.status):
            return True
        return self.default_transient

    @property
    def terminal(self) -> bool:
        """The opposite of :attr:`transient`, for readability at call sites."""
        return not self.transient

    def _message(self) -> str:
        text = self.error
        if self.description:
            text = f"{text}: {self.description}"
        if self.status is not None:
            text = f"{text} (HTTP {self.status})"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(error={self.error!r}, description={self.description!r}, "
            f"status={self.status!r}, transient={self.transient!r})"
        )


class ConfigurationError(OAuthError, ValueError):
    """Our own inputs are unusable: a bad tenant slug or template, a client configuration the
    server cannot accept, a scope with forbidden characters, an endpoint the server does not
    advertise. Terminal.

    ``error`` codes: ``invalid_tenant``, ``invalid_configuration``, ``invalid_scope_value``,
    ``unsupported_auth_method``, ``unsupported_endpoint``.
    """

    default_error = "invalid_configuration"


class TransportError(OAuthError):
    """The HTTP exchange itself failed.

    ``error`` codes: ``timeout`` and ``network_error`` (transient), ``response_too_large``
    (transient: typically a proxy's error page), ``unexpected_redirect`` (terminal: the token and
    metadata endpoints must answer directly, a redirect means a misconfigured host).
    """

    default_error = "network_error"
    default_transient = True


class ProtocolError(OAuthError):
    """The server answered, but not with what the protocol allows.

    Either an RFC 6749 §5.2 error response (``error`` is the server's code, classified by
    code and status), or a response we refuse to interpret: ``invalid_response`` for an HTML,
    empty, non-JSON or non-object body or a missing/ill-typed field (transient: a proxy's error
    page or a cut-off body is a passing fault, not the server's verdict), ``unsupported_token_type`` for anything but Bearer
    (terminal).
    """

    default_error = "invalid_response"
    default_transient = True


class UnusableTokenResponse(ProtocolError):
    """A successful (200) token response that cannot be used, e.g. a missing access token or a
    type other than Bearer, but that carries a refresh token. A server that rotates refresh
    tokens has already revoked the one that was sent, so ``refresh_token`` (never shown in the
    message or repr) is the only live one and must be kept. Classified like its cause.
    """

    def __init__(self, cause: ProtocolError, *, refresh_token: str) -> None:
        super().__init__(
            cause.description,
            error=cause.error,
            uri=cause.uri,
            hint=cause.hint,
            status=cause.status,
            retry_after=cause.retry_after,
            transient=cause.transient,
        )
        self.refresh_token = refresh_token


class MetadataError(ProtocolError):
    """The authorization server metadata (RFC 8414) failed validation: wrong ``issuer``,
    missing endpoint, non-https endpoint. Terminal: it is a misconfiguration or an attack.

    ``error`` code: ``invalid_metadata``.
    """

    default_error = "invalid_metadata"
    default_transient = False


class CallbackError(OAuthError):
    """The redirect back from the authorization endpoint failed validation. Terminal.

    An *error redirect* from the server (``error=access_denied`` etc.) is not this exception:
    it is the :class:`~bipsync_partner.oauth.callback.CallbackDenied` result.

    ``error`` codes: ``unknown_state`` (no pending authorization, e.g. reused), ``state_mismatch``,
    ``iss_mismatch``, ``missing_parameter``, ``duplicate_parameter``, ``invalid_callback``,
    ``expired_request``.
    """

    default_error = "invalid_callback"


class DeviceFlowError(OAuthError):
    """The device authorization poller stopped without a token on our side.

    ``error`` codes: ``expired_token`` (our own deadline, ``expires_in``, passed) and
    ``cancelled`` (the caller cancelled). Both terminal. Server-side ``expired_token`` and
    ``access_denied`` arrive as :class:`ProtocolError` with the same codes.
    """

    default_error = "cancelled"
