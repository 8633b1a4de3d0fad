"""Authorization requests (RFC 6749 §4.1.1 with PKCE, RFC 7636 §4.3).

:func:`start_authorization` makes a fresh PKCE verifier and S256 challenge, a ``state`` of about
256 bits, and the authorization URL; it returns the URL and a :class:`PendingAuthorization` that
the caller keeps server-side (session or cache, via :meth:`PendingAuthorization.to_dict`) until the
redirect comes back to :func:`~bipsync_partner.oauth.callback.validate_callback`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from authlib.common.security import generate_token

from bipsync_partner.oauth._time import require_aware
from bipsync_partner.oauth._urls import check_redirect_uri
from bipsync_partner.oauth.clients import (
    AUTHORIZATION_KINDS,
    RESERVED_AUTHORIZE_PARAMETERS,
    AuthorizationClients,
    AuthorizationKind,
    ClientConfig,
)
from bipsync_partner.oauth.errors import CallbackError, ConfigurationError
from bipsync_partner.oauth.metadata import ServerMetadata
from bipsync_partner.oauth.pkce import (
    CODE_CHALLENGE_METHOD,
    generate_code_verifier,
    s256_code_challenge,
    validate_code_verifier,
)
from bipsync_partner.oauth.scopes import join_scopes, normalize_scopes

#: 43 characters from a 62-letter alphabet: about 256 bits, well above RFC 6749
#: §10.10's 2^-128 bound on guessing.
STATE_LENGTH: Final = 43
MIN_STATE_LENGTH: Final = 22  # 22 * log2(62) ≈ 131 bits
#: How long a pending authorization is honoured: the authorization code's own lifetime
#: (Bipsync reference, "Grants": 10 min), which also bounds how long a user may take to log in.
DEFAULT_PENDING_LIFETIME: Final = timedelta(minutes=10)


@dataclass(frozen=True)
class PendingAuthorization:
    """What must be remembered, server-side, between the redirect to Bipsync and the callback.

    ``state`` and ``code_verifier`` are secrets of this flow and are kept out of the repr.
    ``iss_parameter_supported`` records, at start time, whether the server promised RFC 9207 ``iss``
    on the response, so the callback can demand it without fetching the metadata again.
    """

    state: str = field(repr=False)
    code_verifier: str = field(repr=False)
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    redirect_uri: str
    client_id: str
    kind: AuthorizationKind
    scopes: tuple[str, ...]
    created_at: datetime
    iss_parameter_supported: bool = False

    def __post_init__(self) -> None:
        require_aware(self.created_at, "created_at")

    def age(self, now: datetime) -> timedelta:
        return require_aware(now, "now") - self.created_at

    def is_expired(self, now: datetime, lifetime: timedelta = DEFAULT_PENDING_LIFETIME) -> bool:
        """True once older than ``lifetime`` (or created in the future: a clock or data error)."""
        age = self.age(now)
        return age > lifetime or age < -timedelta(minutes=1)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form for server-side storage (session, cache). It contains the
        verifier: store it where only the server can read it."""
        return {
            "state": self.state,
            "code_verifier": self.code_verifier,
            "issuer": self.issuer,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "redirect_uri": self.redirect_uri,
            "client_id": self.client_id,
            "kind": self.kind,
            "scopes": list(self.scopes),
            "created_at": self.created_at.isoformat(),
            "iss_parameter_supported": self.iss_parameter_supported,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PendingAuthorization:
        """Rebuild from :meth:`to_dict` output; ``CallbackError`` (``invalid_pending``) if the
        stored data is not what ``to_dict`` wrote (tampered, truncated, or an older format)."""

        def text(key: str) -> str:
            value = data.get(key)
            if not isinstance(value, str) or not value:
                raise CallbackError(f"stored authorization lacks {key!r}", error="invalid_pending")
            return value

        try:
            kind = text("kind")
            scopes = data.get("scopes")
            iss_supported = data.get("iss_parameter_supported")
            if kind not in AUTHORIZATION_KINDS:
                raise ValueError("kind")
            if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
                raise ValueError("scopes")
            if not isinstance(iss_supported, bool):
                raise ValueError("iss_parameter_supported")
            created_at = datetime.fromisoformat(text("created_at"))
            state = text("state")
            if len(state) < MIN_STATE_LENGTH:
                raise ValueError("state")
            return cls(
                state=state,
                code_verifier=validate_code_verifier(text("code_verifier")),
                issuer=text("issuer"),
                authorization_endpoint=text("authorization_endpoint"),
                token_endpoint=text("token_endpoint"),
                redirect_uri=text("redirect_uri"),
                client_id=text("client_id"),
                kind=kind,  # type: ignore[arg-type]  # checked against AUTHORIZATION_KINDS above
                scopes=tuple(scopes),
                created_at=created_at,
                iss_parameter_supported=iss_supported,
            )
        except CallbackError:
            raise
        except (ValueError, TypeError, ConfigurationError) as exc:
            raise CallbackError(
                "the stored authorization is not readable", error="invalid_pending"
            ) from exc


def generate_state() -> str:
    """A fresh ``state`` of about 256 bits from ``SystemRandom`` (RFC 6749 §10.12)."""
    return str(generate_token(STATE_LENGTH))


def build_authorization_url(endpoint: str, parameters: Mapping[str, str]) -> str:
    """``endpoint`` with ``parameters`` added to its query. RFC 6749 §3.1: an existing query
    component must be retained, and no parameter may appear twice."""
    parts = urlsplit(endpoint)
    existing = parse_qsl(parts.query, keep_blank_values=True)
    clash = {name for name, _ in existing}.intersection(parameters)
    if clash:
        raise ConfigurationError(
            f"the authorization endpoint already carries {', '.join(sorted(clash))}"
        )
    query = urlencode([*existing, *parameters.items()], quote_via=quote)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def start_authorization(
    metadata: ServerMetadata,
    clients: AuthorizationClients | ClientConfig,
    *,
    redirect_uri: str,
    scopes: Iterable[str] | str,
    now: datetime,
    kind: AuthorizationKind = "user",
    extra_parameters: Mapping[str, str] | None = None,
) -> tuple[str, PendingAuthorization]:
    """Begin an authorization-code flow for ``kind`` (``"user"`` or ``"service_account"``).

    Returns ``(authorize_url, pending)``: send the browser to ``authorize_url`` and keep
    ``pending`` server-side. ``redirect_uri`` is sent exactly as given and must be registered.
    ``extra_parameters`` may add e.g. ``prompt`` but never override the protocol's own ones.
    """
    require_aware(now, "now")
    if isinstance(clients, ClientConfig):
        clients = AuthorizationClients(user=clients)
    client = clients.client_for(kind)
    redirect_uri = check_redirect_uri(redirect_uri)
    requested = normalize_scopes(scopes)
    if not requested:
        # Bipsync: "An empty scope yields a token that can reach nothing".
        raise ConfigurationError("at least one scope is required", error="invalid_scope_value")
    extras = {**clients.authorize_parameters_for(kind), **(extra_parameters or {})}
    clash = RESERVED_AUTHORIZE_PARAMETERS.intersection(extras)
    if clash:
        raise ConfigurationError(f"extra_parameters must not set {', '.join(sorted(clash))}")

    verifier = generate_code_verifier()
    state = generate_state()
    parameters = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": redirect_uri,
        "scope": join_scopes(requested),
        "state": state,
        "code_challenge": s256_code_challenge(verifier),
        "code_challenge_method": CODE_CHALLENGE_METHOD,
        **extras,
    }
    url = build_authorization_url(metadata.authorization_endpoint, parameters)
    pending = PendingAuthorization(
        state=state,
        code_verifier=verifier,
        issuer=metadata.issuer,
        authorization_endpoint=metadata.authorization_endpoint,
        token_endpoint=metadata.token_endpoint,
        redirect_uri=redirect_uri,
        client_id=client.client_id,
        kind=kind,
        scopes=requested,
        created_at=now,
        iss_parameter_supported=metadata.authorization_response_iss_parameter_supported,
    )
    return url, pending
