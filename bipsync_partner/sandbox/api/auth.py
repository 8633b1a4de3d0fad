"""Bearer authentication of REST calls (RFC 6750) against the sandbox's issued tokens.

Bipsync documents ``Authorization: Bearer <token>``, the token unquoted and unaltered (platform
reference, "Tokens"). Tokens are stored as SHA-256 digests (authserver.models), so a lookup is one
indexed query on the digest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from bipsync_partner.sandbox.api.errors import ApiError, bearer_challenge, unauthorized
from bipsync_partner.sandbox.authserver.models import PrincipalKind, Token, digest
from bipsync_partner.sandbox.identity.models import Tenant

# RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token. The scheme is case-insensitive
# (RFC 9110 §11.1); the token is taken exactly as sent.
_BEARER_RE = re.compile(r"^[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*)$")
_SCHEME_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9!#$%&'*+\-.^_`|~]*)")


@dataclass(frozen=True)
class Principal:
    """Who a valid access token acts as, and what it may do."""

    token: Token
    kind: str
    scopes: frozenset[str]
    client_id: str

    @property
    def user_id(self) -> str | None:
        return self.token.user_id

    @property
    def team_id(self) -> str | None:
        return self.token.team_id

    @property
    def service_account_id(self) -> str | None:
        return self.token.service_account_id

    @property
    def application_id(self) -> int:
        return self.token.application_id


def realm(tenant: Tenant) -> str:
    return tenant.api_base


def _raw_token(request: HttpRequest, tenant: Tenant) -> str:
    header = request.META.get("HTTP_AUTHORIZATION")
    if not header:
        # RFC 6750 §3.1: a request without authentication gets a challenge without an error code.
        raise unauthorized(
            realm(tenant), None, "This API needs an access token: Authorization: Bearer <token>."
        )
    match = _BEARER_RE.match(header)
    if match:
        return match.group(1)
    scheme = _SCHEME_RE.match(header)
    if scheme is None or scheme.group(1).lower() != "bearer":
        raise unauthorized(
            realm(tenant), None, "This API accepts only Bearer access tokens (RFC 6750)."
        )
    # RFC 6750 §3.1: a malformed request is invalid_request, answered with 400.
    description = "The Authorization header must be exactly 'Bearer <token>'."
    raise ApiError(
        400,
        "invalid_request",
        description,
        headers={
            "WWW-Authenticate": bearer_challenge(realm(tenant), "invalid_request", description)
        },
    )


def authenticate(request: HttpRequest, tenant: Tenant) -> Principal:
    raw = _raw_token(request, tenant)
    token = (
        Token.objects.select_related("application", "user", "service_account")
        .filter(access_hash=digest(raw), tenant_id=tenant.pk)
        .first()
    )
    if token is None:
        raise unauthorized(realm(tenant), "invalid_token", "The access token is not known here.")
    if token.access_revoked_at is not None:
        raise unauthorized(realm(tenant), "invalid_token", "The access token was revoked.")
    if token.access_expires_at <= timezone.now():
        raise unauthorized(realm(tenant), "invalid_token", "The access token expired.")
    if token.kind == PrincipalKind.USER and (token.user is None or not token.user.is_active):
        raise unauthorized(realm(tenant), "invalid_token", "The token's user is no longer active.")
    return Principal(
        token=token,
        kind=token.kind,
        scopes=frozenset(token.scope.split()),
        client_id=token.application.client_id,
    )


def require_scope(principal: Principal, tenant: Tenant, scope: str) -> None:
    if scope in principal.scopes:
        return
    # Bipsync documents 401 for a missing scope [doc]; RFC 6750 §3.1 would say 403, which
    # Bipsync uses for IP allow-lists. The status is a setting should Bipsync say otherwise.
    raise unauthorized(
        realm(tenant),
        "insufficient_scope",
        f"This request needs the scope {scope}.",
        scope=scope,
        status=settings.SANDBOX_API_INSUFFICIENT_SCOPE_STATUS,
    )
