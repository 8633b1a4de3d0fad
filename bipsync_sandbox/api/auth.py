"""Bearer authentication of REST calls (RFC 6750) against the sandbox's issued tokens.

Bipsync documents ``Authorization: Bearer <token>``, the token unquoted and unaltered (platform
reference, "Tokens"). Tokens are stored as SHA-256 digests (authserver.models), so a lookup is one
indexed query on the digest.
"""

# SQL text is assembled once from table names; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import re
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.http import HttpRequest
from django.utils import timezone

from bipsync_sandbox.api.errors import ApiError, bearer_challenge, unauthorized
from bipsync_sandbox.authserver.models import (
    Application,
    PrincipalKind,
    ServiceAccount,
    Token,
    digest,
)
from bipsync_sandbox.identity.models import Tenant, User

# RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token. The scheme is case-insensitive
# (RFC 9110 §11.1); the token is taken exactly as sent.
_BEARER_RE = re.compile(r"^[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*)$")
_SCHEME_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9!#$%&'*+\-.^_`|~]*)")


@dataclass(frozen=True)
class Principal:
    """Who a valid access token acts as, and what it may do."""

    token_id: int
    kind: str
    scopes: frozenset[str]
    client_id: str
    application_id: int
    user_id: str | None
    # The team of a team token (client credentials with team_{id}).
    team_id: str | None
    service_account_id: str | None
    # The team the service account acts in.
    service_account_team_id: str | None


# One statement per request instead of an ORM query with three joins: building the ORM query
# costs about as much CPU as running it, and this runs on every API call.
_TOKEN_SQL = (
    "SELECT tk.id, tk.kind, tk.scope, tk.access_expires_at, tk.access_revoked_at, "
    "tk.user_id, tk.team_id, tk.service_account_id, tk.application_id, "
    "a.client_id, u.is_active, sa.team_id "
    f"FROM {Token._meta.db_table} tk "
    f"JOIN {Application._meta.db_table} a ON a.id = tk.application_id "
    f"LEFT JOIN {User._meta.db_table} u ON u.id = tk.user_id "
    f"LEFT JOIN {ServiceAccount._meta.db_table} sa ON sa.id = tk.service_account_id "
    "WHERE tk.access_hash = %s AND tk.tenant_id = %s"
)


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
    with connection.cursor() as cursor:
        cursor.execute(_TOKEN_SQL, [digest(raw), tenant.pk])
        row = cursor.fetchone()
    if row is None:
        raise unauthorized(realm(tenant), "invalid_token", "The access token is not known here.")
    (
        token_id,
        kind,
        scope,
        expires_at,
        revoked_at,
        user_id,
        team_id,
        account_id,
        application_id,
        client_id,
        user_active,
        account_team_id,
    ) = row
    if revoked_at is not None:
        raise unauthorized(realm(tenant), "invalid_token", "The access token was revoked.")
    if expires_at <= timezone.now():
        raise unauthorized(realm(tenant), "invalid_token", "The access token expired.")
    if kind == PrincipalKind.USER and not user_active:
        raise unauthorized(realm(tenant), "invalid_token", "The token's user is no longer active.")
    return Principal(
        token_id=token_id,
        kind=kind,
        scopes=frozenset((scope or "").split()),
        client_id=client_id,
        application_id=application_id,
        user_id=user_id,
        team_id=team_id,
        service_account_id=account_id,
        service_account_team_id=account_team_id,
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
