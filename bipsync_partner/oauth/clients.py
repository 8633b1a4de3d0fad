"""Client configuration: credentials, client authentication, and the service-account selector.

Client authentication at the token endpoint (RFC 6749 §2.3) uses one of

- ``client_secret_post``: ``client_id`` and ``client_secret`` in the form body (Bipsync [doc]);
- ``client_secret_basic``: HTTP Basic (Bipsync accepts it [choice]);
- ``none``: public clients, which send only ``client_id``.

The method is the first of the client's preferences that the server advertises in
``token_endpoint_auth_methods_supported`` (RFC 8414 §2; when omitted the RFC's default,
``client_secret_basic``, applies — plus ``none`` for a public client, which has nothing else).

The service-account variation of the authorization-code grant is selected by configuration
(Bipsync reference, "Grants"): by default the partner holds a second application registered as a
service account (``separate_client``); alternatively the same client adds configured parameters to
the authorization request (``authorize_parameters``).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, get_args
from urllib.parse import quote_plus

from bipsync_partner.oauth.errors import ConfigurationError

AuthMethod = Literal["client_secret_post", "client_secret_basic", "none"]
AUTH_METHODS: Final[tuple[AuthMethod, ...]] = get_args(AuthMethod)
#: Bipsync documents the body form, and accepts Basic [choice]: prefer the documented one.
CONFIDENTIAL_DEFAULT_AUTH_METHODS: Final[tuple[AuthMethod, ...]] = (
    "client_secret_post",
    "client_secret_basic",
)

AuthorizationKind = Literal["user", "service_account"]
AUTHORIZATION_KINDS: Final[tuple[AuthorizationKind, ...]] = get_args(AuthorizationKind)
ServiceAccountMode = Literal["separate_client", "authorize_parameters"]
SERVICE_ACCOUNT_MODES: Final[tuple[ServiceAccountMode, ...]] = get_args(ServiceAccountMode)

# Parameters the authorization request builds itself; configuration must not override them.
RESERVED_AUTHORIZE_PARAMETERS: Final = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
    }
)


def _visible_ascii(value: str) -> bool:
    return bool(value) and all("\x21" <= ch <= "\x7e" for ch in value)


@dataclass(frozen=True)
class ClientConfig:
    """One registered OAuth application.

    Attributes:
        client_id: the application's client id.
        client_secret: its secret; ``None`` for a public application. Never in the repr.
        auth_methods: client authentication methods in order of preference; ``None`` means
            ``client_secret_post`` then ``client_secret_basic`` for a confidential client and
            ``none`` for a public one.
    """

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    auth_methods: tuple[AuthMethod, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.client_id, str) or not _visible_ascii(self.client_id):
            raise ConfigurationError("client_id must be non-empty visible ASCII")
        if self.client_secret is not None and not _visible_ascii(self.client_secret):
            raise ConfigurationError(
                "client_secret must be non-empty visible ASCII, or None for a public client"
            )
        if self.auth_methods is not None:
            methods = tuple(self.auth_methods)
            if not methods or any(method not in AUTH_METHODS for method in methods):
                raise ConfigurationError(
                    f"auth_methods must be a non-empty selection of {', '.join(AUTH_METHODS)}",
                    error="unsupported_auth_method",
                )
            if self.is_public and methods != ("none",):
                raise ConfigurationError(
                    "a public client (no client_secret) can only use the 'none' method",
                    error="unsupported_auth_method",
                )
            object.__setattr__(self, "auth_methods", methods)

    @property
    def is_public(self) -> bool:
        return self.client_secret is None

    @property
    def preferred_auth_methods(self) -> tuple[AuthMethod, ...]:
        if self.auth_methods is not None:
            return self.auth_methods
        return ("none",) if self.is_public else CONFIDENTIAL_DEFAULT_AUTH_METHODS


def choose_auth_method(
    client: ClientConfig, server_supported: tuple[str, ...] | None
) -> AuthMethod:
    """The first of the client's preferred methods that the server supports.

    ``server_supported`` is ``token_endpoint_auth_methods_supported`` (or the revocation
    equivalent) as published, ``None`` when omitted. Raises ``ConfigurationError``
    (``unsupported_auth_method``) when they have nothing in common.
    """
    if server_supported is None:
        # RFC 8414 §2: "If omitted, the default is client_secret_basic". A public client has no
        # secret to send in any form, so "none" is its only possibility and is allowed too.
        server_supported = (
            ("client_secret_basic", "none") if client.is_public else ("client_secret_basic",)
        )
    for method in client.preferred_auth_methods:
        if method in server_supported:
            return method
    raise ConfigurationError(
        f"the server supports {', '.join(server_supported) or 'no method'} for client "
        f"authentication, the client is configured for "
        f"{', '.join(client.preferred_auth_methods)}",
        error="unsupported_auth_method",
    )


def apply_client_auth(
    method: AuthMethod,
    client: ClientConfig,
    form: dict[str, str],
    headers: dict[str, str],
) -> None:
    """Add ``client``'s credentials to a token-endpoint request by ``method`` (RFC 6749 §2.3.1)."""
    if method == "none":
        form["client_id"] = client.client_id
        return
    if client.client_secret is None:
        raise ConfigurationError(f"{method} needs a client_secret", error="unsupported_auth_method")
    if method == "client_secret_post":
        form["client_id"] = client.client_id
        form["client_secret"] = client.client_secret
        return
    # RFC 6749 §2.3.1: id and secret are form-urlencoded before being joined and base64-encoded.
    userpass = f"{quote_plus(client.client_id)}:{quote_plus(client.client_secret)}"
    headers["Authorization"] = "Basic " + base64.b64encode(userpass.encode("ascii")).decode("ascii")


@dataclass(frozen=True)
class AuthorizationClients:
    """Which client (and which extra authorize parameters) each authorization kind uses.

    Attributes:
        user: the application for the plain user flow.
        service_account: the service-account application (mode ``separate_client``, default).
        service_account_mode: ``separate_client`` or ``authorize_parameters``.
        service_account_parameters: extra authorize parameters for mode ``authorize_parameters``
            (sent with the ``user`` client), e.g. ``{"account_type": "service_account"}``.
    """

    user: ClientConfig
    service_account: ClientConfig | None = None
    service_account_mode: ServiceAccountMode = "separate_client"
    service_account_parameters: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.service_account_mode not in SERVICE_ACCOUNT_MODES:
            raise ConfigurationError(
                f"service_account_mode must be one of {', '.join(SERVICE_ACCOUNT_MODES)}"
            )
        parameters = dict(self.service_account_parameters)
        clash = RESERVED_AUTHORIZE_PARAMETERS.intersection(parameters)
        if clash:
            raise ConfigurationError(
                f"service_account_parameters must not set {', '.join(sorted(clash))}"
            )
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in parameters.items()):
            raise ConfigurationError("service_account_parameters must map strings to strings")
        if self.service_account_mode == "authorize_parameters" and not parameters:
            raise ConfigurationError(
                "service_account_mode 'authorize_parameters' needs service_account_parameters"
            )
        object.__setattr__(self, "service_account_parameters", MappingProxyType(parameters))

    def client_for(self, kind: AuthorizationKind) -> ClientConfig:
        """The client that authorizes ``kind``; ``ConfigurationError`` when none is configured."""
        if kind == "user" or self.service_account_mode == "authorize_parameters":
            if kind not in AUTHORIZATION_KINDS:
                raise ConfigurationError(f"unknown authorization kind {kind!r}")
            return self.user
        if kind != "service_account":
            raise ConfigurationError(f"unknown authorization kind {kind!r}")
        if self.service_account is None:
            raise ConfigurationError(
                "no service-account client is configured (service_account_mode "
                "'separate_client' needs one)"
            )
        return self.service_account

    def authorize_parameters_for(self, kind: AuthorizationKind) -> dict[str, str]:
        """Extra authorization-request parameters for ``kind`` (empty unless configured)."""
        if kind == "service_account" and self.service_account_mode == "authorize_parameters":
            return dict(self.service_account_parameters)
        return {}
