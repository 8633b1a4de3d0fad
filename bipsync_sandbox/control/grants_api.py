"""Admin API for load and soak tests: mint many grants at once, revoke chosen grants, check many
tokens at once. Same guard as the rest of ``/_sandbox/`` (``X-Sandbox-Admin-Key``; no key
configured → 404).

| method + path | body | answer |
|---|---|---|
| POST /_sandbox/applications/{client_id}/grants | tenant, count (1-1000), team_id? or user_id?, scope?, access_min?, access_max? | grants: [grant_id, access_token, refresh_token, token_type, expires_in, scope, subject, subject_name] |
| POST /_sandbox/grants/revoke | grant_ids | revoked (token rows changed) |
| POST /_sandbox/introspect/batch | tokens (at most 1000) | results: [active, token_type, grant_id, revoke_reason, revoked_at] in order |

Minting a grant here is what one authorization-code grant plus its code exchange would leave
behind (one token row with its own grant id, the same lifetimes and the same principal rules), only
without a browser: a soak of 2,000 connections would otherwise drive 2,000 consent pages. The
tokens are answered once, like a token response, and stored only as digests. ``access_min`` /
``access_max`` spread the first access tokens' lifetimes uniformly so that 2,000 connections do
not all expire in the same second; later refreshes use the normal lifetimes.
"""

from __future__ import annotations

import random
import secrets
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from bipsync_sandbox.authserver.models import (
    AUTHORIZATION_CODE,
    REFRESH_TOKEN,
    PrincipalKind,
    ServiceAccount,
    Token,
    digest,
)
from bipsync_sandbox.authserver.server import includes_subject, revoke_grant
from bipsync_sandbox.control import runtime
from bipsync_sandbox.control.admin_api import (
    BadInput,
    _application,
    _body,
    _json,
    _opt_int,
    _str,
    _str_list,
    _tenant,
    admin_api,
)
from bipsync_sandbox.identity.models import Team, User

MAX_BATCH = 1000


def _count(data: dict[str, Any]) -> int:
    count = _opt_int(data, "count", 1)
    if count is None or count > MAX_BATCH:
        raise BadInput(f"count must be a whole number from 1 to {MAX_BATCH}.")
    return count


@admin_api(("POST",))
def mint_grants(request: HttpRequest, client_id: str) -> HttpResponse:
    """Issue ``count`` independent grants (access + refresh token pairs) of one application."""
    app = _application(client_id)
    data = _body(request)
    tenant = _tenant(_str(data, "tenant"))
    count = _count(data)
    if not app.tenants.filter(pk=tenant.pk).exists():
        raise BadInput("The application is not enabled for this tenant.", status=409)
    if REFRESH_TOKEN not in app.grant_types or AUTHORIZATION_CODE not in app.grant_types:
        raise BadInput("The application must have the authorization_code and refresh_token grants.")
    scope_words = _str(data, "scope", " ".join(app.scopes)).split()
    if any(word not in app.scopes for word in scope_words):
        raise BadInput("scope asks for more than the application may have.")
    scope = " ".join(dict.fromkeys(scope_words))
    times = runtime.lifetimes(app)
    access_min = _opt_int(data, "access_min", 1) or times.access
    access_max = _opt_int(data, "access_max", 1) or access_min
    if access_max < access_min:
        raise BadInput("access_max must not be below access_min.")

    account: ServiceAccount | None = None
    user: User | None = None
    if app.service_account:
        team = Team.objects.filter(pk=_str(data, "team_id", ""), tenant=tenant).first()
        if team is None:
            raise BadInput("team_id must name a team of this tenant.", status=404)
        account, _ = ServiceAccount.objects.get_or_create(
            application=app, team=team, defaults={"name": f"{app.name} (service account)"}
        )
        kind = PrincipalKind.SERVICE_ACCOUNT
        subject = {"subject": account.id, "subject_name": account.name}
    else:
        user = User.objects.filter(pk=_str(data, "user_id", ""), tenant=tenant).first()
        if user is None or not user.is_active:
            raise BadInput("user_id must name an active user of this tenant.", status=404)
        kind = PrincipalKind.USER
        subject = {"subject": user.id, "subject_name": user.name or user.email}

    now = timezone.now()
    rows: list[Token] = []
    answers: list[dict[str, Any]] = []
    with_subject = includes_subject()
    for _ in range(count):
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        lifetime = random.randint(access_min, access_max)
        grant_id = uuid.uuid4()
        rows.append(
            Token(
                tenant=tenant,
                application=app,
                grant_id=grant_id,
                grant_type=AUTHORIZATION_CODE,
                kind=kind,
                user=user,
                service_account=account,
                team=account.team if account is not None else None,
                scope=scope,
                granted_scope=scope,
                access_hash=digest(access),
                refresh_hash=digest(refresh),
                access_expires_at=now + timedelta(seconds=lifetime),
                refresh_expires_at=now + timedelta(seconds=times.refresh),
            )
        )
        answer: dict[str, Any] = {
            "grant_id": str(grant_id),
            "access_token": access,
            "refresh_token": refresh,
            "token_type": settings.SANDBOX_TOKEN_TYPE,
            "expires_in": lifetime,
        }
        if settings.SANDBOX_TOKEN_RESPONSE_INCLUDES_SCOPE:
            answer["scope"] = scope
        if with_subject:
            answer.update(subject)
        answers.append(answer)
    with transaction.atomic():
        Token.objects.bulk_create(rows, batch_size=500)
    response = _json({"client_id": app.client_id, "tenant": tenant.slug, "grants": answers}, 201)
    response["Pragma"] = "no-cache"
    return response


def _grant_ids(data: dict[str, Any]) -> list[uuid.UUID]:
    raw = _str_list(data, "grant_ids")
    if len(raw) > MAX_BATCH:
        raise BadInput(f"At most {MAX_BATCH} grant_ids per call.")
    try:
        return [uuid.UUID(value) for value in raw]
    except ValueError:
        raise BadInput("grant_ids must be UUIDs.") from None


@admin_api(("POST",))
def revoke_grants(request: HttpRequest) -> HttpResponse:
    """Revoke whole grants (every token of each), as a customer revoking the partner's access
    at Bipsync would: the next refresh of such a grant gets ``invalid_grant``."""
    changed = 0
    with transaction.atomic():
        for grant_id in _grant_ids(_body(request)):
            changed += revoke_grant(grant_id, "admin")
    return _json({"revoked": changed})


@admin_api(("POST",))
def introspect_batch(request: HttpRequest) -> HttpResponse:
    """Like ``/_sandbox/introspect`` for many tokens at once (fewer fields): whether each is an
    active access or refresh token, and its grant."""
    tokens = _body(request).get("tokens", [])
    # Not _str_list: that one drops duplicates, and answers must line up with the tokens sent.
    if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
        raise BadInput("tokens must be a list of strings.")
    if len(tokens) > MAX_BATCH:
        raise BadInput(f"At most {MAX_BATCH} tokens per call.")
    hashes = [digest(token) for token in tokens]
    by_access = {row.access_hash: row for row in Token.objects.filter(access_hash__in=hashes)}
    by_refresh = {row.refresh_hash: row for row in Token.objects.filter(refresh_hash__in=hashes)}
    # How often each grant's refresh token was rotated: a soak compares it, grant by grant, with
    # the rotations the partner stored, so that a rotation nobody kept names its connection.
    rotations = dict(
        Token.objects.filter(
            grant_id__in={row.grant_id for row in by_refresh.values()}, revoke_reason="rotated"
        )
        .values_list("grant_id")
        .annotate(count=Count("id"))
        .order_by()
    )
    now = timezone.now()
    results: list[dict[str, Any]] = []
    for hashed in hashes:
        if hashed in by_refresh:
            row = by_refresh[hashed]
            token_type = "refresh_token"
            active = row.refresh_revoked_at is None and (row.refresh_expires_at or now) > now
        elif hashed in by_access:
            row = by_access[hashed]
            token_type = "access_token"
            active = row.access_revoked_at is None and row.access_expires_at > now
        else:
            results.append({"active": False})
            continue
        revoked_at = row.refresh_revoked_at if token_type == "refresh_token" else None
        results.append(
            {
                "active": active,
                "token_type": token_type,
                "grant_id": str(row.grant_id),
                "revoke_reason": row.revoke_reason or None,
                # When a refresh token was rotated or revoked: a soak tells a rotation whose
                # reply was lost (a killed worker, a dropped reply) from one the partner stored.
                "revoked_at": revoked_at.isoformat() if revoked_at else None,
                "grant_rotations": (
                    rotations.get(row.grant_id, 0) if token_type == "refresh_token" else None
                ),
            }
        )
    return _json({"results": results})
