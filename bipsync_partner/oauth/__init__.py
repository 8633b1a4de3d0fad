"""OAuth 2.0 client core for Bipsync tenants. Imports no Django: settings, sessions and models
are the caller's business, and everything here is given what it needs.

Modules, each with one job:

- :mod:`~bipsync_partner.oauth.tenants`: slug + host templates -> :class:`Tenant` (issuer = API base).
- :mod:`~bipsync_partner.oauth.transport`: :class:`HttpClient` (timeouts, no redirects, bounded
  bodies, User-Agent), :func:`create_httpx_client`, :class:`BearerAuth`.
- :mod:`~bipsync_partner.oauth.metadata`: RFC 8414 discovery, exact-issuer check, endpoints held to
  the issuer's host, per-issuer cache and last-known-good copy.
- :mod:`~bipsync_partner.oauth.pkce`: RFC 7636 S256.
- :mod:`~bipsync_partner.oauth.clients`: :class:`ClientConfig`, client authentication, and
  :class:`AuthorizationClients` (the service-account selector).
- :mod:`~bipsync_partner.oauth.authorization`: :func:`start_authorization` ->
  ``(url, PendingAuthorization)``.
- :mod:`~bipsync_partner.oauth.callback`: :func:`validate_callback` -> :class:`CallbackSuccess` or
  :class:`CallbackDenied`.
- :mod:`~bipsync_partner.oauth.tokens`: strict RFC 6749 §5.1 parsing -> :class:`Token`
  (``is_expired(now, leeway)``, ``bearer_auth()``, additional string parameters in ``extra``;
  the repr never shows a token).
- :mod:`~bipsync_partner.oauth.grants`: :class:`GrantClient` (code exchange, refresh, client
  credentials, device flow, revocation).
- :mod:`~bipsync_partner.oauth.errors`: the :class:`OAuthError` family (``ConfigurationError``,
  ``TransportError``, ``ProtocolError`` > ``MetadataError``, ``UnusableTokenResponse``,
  ``CallbackError``, ``DeviceFlowError``); decide by ``.transient`` and ``.error``.
- :mod:`~bipsync_partner.oauth.scopes`: scope validation and Bipsync's ``team_{id}`` scope.

Time is always passed in (``now=``) or read from an injectable ``clock``; datetimes are aware.

Usage (the authorization-code flow, as the Django views will do it)::

    from datetime import UTC, datetime
    from bipsync_partner import oauth

    tenant = oauth.resolve_tenant("acme", oauth.HostTemplates(api_tpl, web_tpl))
    with oauth.HttpClient(oauth.TransportSettings(timeout=15)) as http:
        metadata = oauth.discover(tenant.issuer, http, cache=django_cache,
                                  web_base=tenant.web_base, allow_insecure_loopback=settings_flag)
        clients = oauth.AuthorizationClients(
            user=oauth.ClientConfig("user-client-id", "secret"),
            service_account=oauth.ClientConfig("service-client-id", "secret2"),
        )
        url, pending = oauth.start_authorization(
            metadata, clients, redirect_uri="https://partner.example/oauth/callback",
            scopes=["rest_api:read"], kind="service_account", now=datetime.now(UTC))
        session["pending"] = pending.to_dict()          # then redirect the browser to url

        # ... in the callback view:
        pending = oauth.PendingAuthorization.from_dict(session.pop("pending"))
        result = oauth.validate_callback(request.META["QUERY_STRING"], pending,
                                         now=datetime.now(UTC))      # CallbackError if forged
        if isinstance(result, oauth.CallbackDenied):
            ...  # show result.error / result.description on a normal page
        else:
            grants = oauth.GrantClient(metadata, clients.client_for(pending.kind), http)
            token = grants.exchange_code(pending, result)   # oauth.Token; repr hides secrets
            later = grants.refresh(token.refresh_token, previous_scopes=token.scopes)

Errors: catch :class:`OAuthError`; ``exc.transient`` says whether to retry later (honouring
``exc.retry_after``), ``exc.error`` is the RFC code (``invalid_grant`` -> reconnect needed).
"""

from bipsync_partner.oauth.authorization import (
    DEFAULT_PENDING_LIFETIME,
    PendingAuthorization,
    build_authorization_url,
    generate_state,
    start_authorization,
)
from bipsync_partner.oauth.callback import (
    CallbackDenied,
    CallbackParameters,
    CallbackResult,
    CallbackSuccess,
    InMemoryPendingStore,
    PendingAuthorizationStore,
    complete_callback,
    parse_callback_parameters,
    validate_callback,
)
from bipsync_partner.oauth.clients import (
    AuthMethod,
    AuthorizationClients,
    AuthorizationKind,
    ClientConfig,
    ServiceAccountMode,
    apply_client_auth,
    choose_auth_method,
)
from bipsync_partner.oauth.errors import (
    CallbackError,
    ConfigurationError,
    DeviceFlowError,
    MetadataError,
    OAuthError,
    ProtocolError,
    TransportError,
    UnusableTokenResponse,
)
from bipsync_partner.oauth.grants import (
    DeviceAuthorization,
    DevicePollAttempt,
    GrantClient,
)
from bipsync_partner.oauth.metadata import (
    InMemoryMetadataCache,
    LastGoodMetadataStore,
    MetadataCache,
    MetadataEvent,
    ServerMetadata,
    discover,
    metadata_url,
    metadata_urls,
    parse_metadata_response,
    validate_metadata,
)
from bipsync_partner.oauth.pkce import generate_code_verifier, s256_code_challenge
from bipsync_partner.oauth.scopes import join_scopes, normalize_scopes, team_scope
from bipsync_partner.oauth.tenants import HostTemplates, Tenant, resolve_tenant, validate_slug
from bipsync_partner.oauth.tokens import Token, parse_token_response
from bipsync_partner.oauth.transport import (
    BearerAuth,
    HttpClient,
    HttpResponse,
    TransportSettings,
    create_httpx_client,
)
from bipsync_partner.oauth.version import __version__

__all__ = [
    "DEFAULT_PENDING_LIFETIME",
    "AuthMethod",
    "AuthorizationClients",
    "AuthorizationKind",
    "BearerAuth",
    "CallbackDenied",
    "CallbackError",
    "CallbackParameters",
    "CallbackResult",
    "CallbackSuccess",
    "ClientConfig",
    "ConfigurationError",
    "DeviceAuthorization",
    "DeviceFlowError",
    "DevicePollAttempt",
    "GrantClient",
    "HostTemplates",
    "HttpClient",
    "HttpResponse",
    "InMemoryMetadataCache",
    "InMemoryPendingStore",
    "LastGoodMetadataStore",
    "MetadataCache",
    "MetadataError",
    "MetadataEvent",
    "OAuthError",
    "PendingAuthorization",
    "PendingAuthorizationStore",
    "ProtocolError",
    "ServerMetadata",
    "ServiceAccountMode",
    "Tenant",
    "Token",
    "TransportError",
    "TransportSettings",
    "UnusableTokenResponse",
    "__version__",
    "apply_client_auth",
    "build_authorization_url",
    "choose_auth_method",
    "complete_callback",
    "create_httpx_client",
    "discover",
    "generate_code_verifier",
    "generate_state",
    "join_scopes",
    "metadata_url",
    "metadata_urls",
    "normalize_scopes",
    "parse_callback_parameters",
    "parse_metadata_response",
    "parse_token_response",
    "resolve_tenant",
    "s256_code_challenge",
    "start_authorization",
    "team_scope",
    "validate_callback",
    "validate_metadata",
    "validate_slug",
]
