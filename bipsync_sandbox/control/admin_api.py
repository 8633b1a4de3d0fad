"""The sandbox admin HTTP API under ``/_sandbox/``: quick set-up for tests and run commands.

Guarded by the ``X-Sandbox-Admin-Key`` header (``SANDBOX_ADMIN_KEY``). Not configured → 404, as if
the API did not exist; wrong or missing key → 401. JSON in, JSON out.

| method + path | body | answer |
|---|---|---|
| POST /_sandbox/tenants | slug, name?, ip_allowlist? | tenant |
| PUT /_sandbox/tenants/{slug}/allowlist | cidrs | tenant |
| POST /_sandbox/tenants/{slug}/teams | name, id? | team |
| POST /_sandbox/tenants/{slug}/users | email, password, name?, team_id?, admin? | user |
| POST /_sandbox/applications | name, confidential?, redirect_uris, grant_types, scopes, service_account?, tenants?, team_id?, client_id?, client_secret? | client_id, client_secret (once) |
| POST/DELETE /_sandbox/applications/{client_id}/tenants/{slug} | | enabled tenants |
| POST /_sandbox/applications/{client_id}/tokens | action: expire_access / expire_refresh / expire_codes / expire_device_codes / revoke | changed rows |
| GET/PUT/DELETE /_sandbox/lifetimes | access?, refresh?, code?, device?, device_interval?, client_id? | lifetimes |
| POST /_sandbox/introspect | token | active, kind, user_id, service_account_id, team_id, scope, ... |
| GET/POST/DELETE /_sandbox/faults | target, kind, status?, delay_ms?, when?, keep?, count?, probability?, method?, tenant?, client_id?, grant_type?, path_prefix?, alter? | fault(s) |
| GET/DELETE /_sandbox/counters?client_id= | | counters |

Bulk grants for soak and load tests (mint many, revoke chosen grants, introspect many) live in
:mod:`bipsync_sandbox.control.grants_api`.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from bipsync_sandbox import hosts
from bipsync_sandbox.authserver.models import (
    GRANT_TYPES,
    Application,
    AuthorizationCode,
    DeviceCode,
    Token,
    digest,
    new_secret,
)
from bipsync_sandbox.authserver.scopes import KNOWN_SCOPES
from bipsync_sandbox.control import runtime
from bipsync_sandbox.control.models import (
    LISTING_FAULTS,
    EndpointCounter,
    Fault,
    FaultKind,
    FaultTarget,
    RuntimeConfig,
)
from bipsync_sandbox.identity.models import Membership, Team, Tenant, User

HEADER = "X-Sandbox-Admin-Key"
OBJECT_ID_RE = re.compile(r"^[0-9a-f]{24}$")
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9._~-]{1,100}$")

View = Callable[..., HttpResponse]


class BadInput(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _json(data: Any, status: int = 200) -> JsonResponse:
    response = JsonResponse(data, status=status, safe=False)
    response["Cache-Control"] = "no-store"
    return response


def admin_api(methods: tuple[str, ...]) -> Callable[[View], View]:
    def decorate(view: View) -> View:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            configured = settings.SANDBOX_ADMIN_KEY
            if not configured:
                return _json({"error": "not_found"}, status=404)
            given = request.headers.get(HEADER, "")
            if not given or not secrets.compare_digest(given.encode(), configured.encode()):
                return _json({"error": "unauthorized", "detail": f"Send {HEADER}."}, status=401)
            if request.method not in methods:
                response = _json({"error": "method_not_allowed"}, status=405)
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return view(request, *args, **kwargs)
            except BadInput as exc:
                return _json({"error": "bad_request", "detail": str(exc)}, status=exc.status)

        return wrapper

    return decorate


def _body(request: HttpRequest) -> dict[str, Any]:
    if not request.body:
        return {}
    try:
        data = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise BadInput("The body must be JSON.") from None
    if not isinstance(data, dict):
        raise BadInput("The body must be a JSON object.")
    return data


def _str(data: dict[str, Any], key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise BadInput(f"{key} must be a string.")
    return value


def _str_list(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadInput(f"{key} must be a list of strings.")
    return list(dict.fromkeys(value))


def _opt_int(data: dict[str, Any], key: str, minimum: int = 0) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise BadInput(f"{key} must be a whole number of at least {minimum}.")
    return value


def _tenant(slug: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise BadInput(f"No tenant {slug!r}.", status=404)
    return tenant


def _cidrs(values: list[str]) -> list[str]:
    try:
        return [str(ipaddress.ip_network(value, strict=False)) for value in values]
    except ValueError:
        raise BadInput("ip_allowlist entries must be CIDRs such as 10.0.0.0/8.") from None


def tenant_json(tenant: Tenant) -> dict[str, Any]:
    return {
        "slug": tenant.slug,
        "name": tenant.name,
        "api_base": tenant.api_base,
        "web_base": tenant.web_base,
        "issuer": tenant.issuer,
        "ip_allowlist": tenant.ip_allowlist,
    }


# --- views ---------------------------------------------------------------------------------


def health(request: HttpRequest) -> HttpResponse:
    """Readiness probe (no key): the process answers and the database is reachable."""
    Tenant.objects.exists()
    return _json({"status": "ok"})


@admin_api(("POST",))
def create_tenant(request: HttpRequest) -> HttpResponse:
    data = _body(request)
    slug = _str(data, "slug")
    if not hosts.is_valid_slug(slug):
        raise BadInput("slug must match ^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$.")
    allowlist = _cidrs(_str_list(data, "ip_allowlist"))
    tenant, created = Tenant.objects.get_or_create(
        slug=slug, defaults={"name": _str(data, "name", slug), "ip_allowlist": allowlist}
    )
    return _json(tenant_json(tenant), status=201 if created else 200)


@admin_api(("PUT",))
def set_allowlist(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = _tenant(slug)
    tenant.ip_allowlist = _cidrs(_str_list(_body(request), "cidrs"))
    tenant.save(update_fields=["ip_allowlist"])
    return _json(tenant_json(tenant))


@admin_api(("POST",))
def create_team(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = _tenant(slug)
    data = _body(request)
    name = _str(data, "name")
    team_id = data.get("id")
    if team_id is not None:
        if not isinstance(team_id, str) or not OBJECT_ID_RE.match(team_id):
            raise BadInput("id must be 24 lower-case hex characters.")
        team, _ = Team.objects.get_or_create(pk=team_id, defaults={"tenant": tenant, "name": name})
        if team.tenant_id != tenant.pk:
            raise BadInput("That team id belongs to another tenant.", status=409)
    else:
        team = Team.objects.create(tenant=tenant, name=name)
    return _json({"id": team.pk, "name": team.name, "tenant": tenant.slug}, status=201)


@admin_api(("POST",))
def create_user(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = _tenant(slug)
    data = _body(request)
    email = _str(data, "email").strip().lower()
    password = _str(data, "password")
    if "@" not in email or not password:
        raise BadInput("email and password are required.")
    team_id = data.get("team_id")
    team = None
    if team_id is not None:
        team = Team.objects.filter(pk=str(team_id), tenant=tenant).first()
        if team is None:
            raise BadInput("team_id names no team of this tenant.", status=404)
    admin = bool(data.get("admin", False))
    with transaction.atomic():
        user = User.objects.filter(tenant=tenant, email=email).first()
        if user is None:
            user = User(tenant=tenant, email=email)
        user.name = _str(data, "name", user.name or email.split("@")[0].title())
        user.set_password(password)
        user.is_active = bool(data.get("active", True))
        user.save()
        if team is not None:
            Membership.objects.update_or_create(user=user, team=team, defaults={"is_admin": admin})
    return _json(
        {
            "id": user.pk,
            "email": user.email,
            "name": user.name,
            "tenant": tenant.slug,
            "team_id": team.pk if team else None,
            "admin": admin,
        },
        status=201,
    )


def create_or_update_application(data: dict[str, Any]) -> tuple[Application, str | None]:
    """Shared by the admin API and the seed command. Returns the app and a new secret, if any."""
    name = _str(data, "name")
    client_id = _str(data, "client_id", "") or "app-" + secrets.token_hex(8)
    if not CLIENT_ID_RE.match(client_id):
        raise BadInput("client_id may use letters, digits and . _ ~ - (1-100 characters).")
    confidential = bool(data.get("confidential", True))
    redirect_uris = _str_list(data, "redirect_uris")
    for uri in redirect_uris:
        if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", uri) or "#" in uri or "*" in uri:
            raise BadInput("redirect_uris must be absolute, exact, without fragments or wildcards.")
    grant_types = _str_list(data, "grant_types") or ["authorization_code", "refresh_token"]
    unknown = [g for g in grant_types if g not in GRANT_TYPES]
    if unknown:
        raise BadInput(f"Unknown grant types: {', '.join(unknown)}.")
    if not confidential and "client_credentials" in grant_types:
        raise BadInput("A public application cannot use client_credentials (RFC 6749 §4.4).")
    app_scopes = _str_list(data, "scopes")
    bad_scopes = [s for s in app_scopes if s not in KNOWN_SCOPES]
    if bad_scopes:
        raise BadInput(f"Unknown scopes: {', '.join(bad_scopes)}.")
    tenants = [_tenant(slug) for slug in _str_list(data, "tenants")]
    owner_team = None
    if data.get("team_id"):
        owner_team = Team.objects.select_related("tenant").filter(pk=str(data["team_id"])).first()
        if owner_team is None:
            raise BadInput("team_id names no team.", status=404)
        if owner_team.tenant not in tenants:
            tenants.append(owner_team.tenant)
    secret_given = data.get("client_secret")
    if secret_given is not None and (not isinstance(secret_given, str) or len(secret_given) < 16):
        raise BadInput("client_secret must be a string of at least 16 characters.")
    with transaction.atomic():
        app = Application.objects.filter(client_id=client_id).first()
        created = app is None
        if app is None:
            app = Application(client_id=client_id)
        app.name = name
        app.confidential = confidential
        app.redirect_uris = redirect_uris
        app.grant_types = grant_types
        app.scopes = app_scopes
        app.service_account = bool(data.get("service_account", False))
        app.owner_team = owner_team
        new = None
        if confidential and (created or secret_given is not None or not app.client_secret_hash):
            new = secret_given or new_secret()
            app.set_secret(new)
        if not confidential:
            app.client_secret_hash = ""
        app.save()
        if tenants:
            app.tenants.add(*tenants)
    return app, new


def application_json(app: Application, secret: str | None) -> dict[str, Any]:
    return {
        "client_id": app.client_id,
        "client_secret": secret,
        "name": app.name,
        "confidential": app.confidential,
        "redirect_uris": app.redirect_uris,
        "grant_types": app.grant_types,
        "scopes": app.scopes,
        "service_account": app.service_account,
        "team_id": app.owner_team_id,
        "tenants": sorted(t.slug for t in app.tenants.all()),
    }


@admin_api(("POST",))
def create_application(request: HttpRequest) -> HttpResponse:
    try:
        app, secret = create_or_update_application(_body(request))
    except IntegrityError:
        raise BadInput("That application conflicts with an existing one.", status=409) from None
    return _json(application_json(app, secret), status=201)


def _application(client_id: str) -> Application:
    app = Application.objects.filter(client_id=client_id).first()
    if app is None:
        raise BadInput(f"No application {client_id!r}.", status=404)
    return app


@admin_api(("POST", "DELETE"))
def application_tenant(request: HttpRequest, client_id: str, slug: str) -> HttpResponse:
    app = _application(client_id)
    tenant = _tenant(slug)
    if request.method == "POST":
        app.tenants.add(tenant)
    else:
        app.tenants.remove(tenant)
    return _json({"client_id": app.client_id, "tenants": sorted(t.slug for t in app.tenants.all())})


@admin_api(("POST",))
def application_tokens(request: HttpRequest, client_id: str) -> HttpResponse:
    """Age or revoke an application's tokens at once, so tests need not sleep."""
    app = _application(client_id)
    data = _body(request)
    action = _str(data, "action")
    rows = Token.objects.filter(application=app)
    if data.get("tenant"):
        rows = rows.filter(tenant=_tenant(_str(data, "tenant")))
    past = timezone.now() - timedelta(seconds=1)
    if action == "expire_access":
        changed = rows.filter(access_expires_at__gt=past).update(access_expires_at=past)
    elif action == "expire_refresh":
        changed = rows.filter(refresh_expires_at__gt=past).update(refresh_expires_at=past)
    elif action == "expire_codes":
        codes = AuthorizationCode.objects.filter(application=app, expires_at__gt=past)
        changed = codes.update(expires_at=past)
    elif action == "expire_device_codes":
        devices = DeviceCode.objects.filter(application=app, expires_at__gt=past)
        changed = devices.update(expires_at=past)
    elif action == "revoke":
        now = timezone.now()
        changed = rows.filter(refresh_revoked_at__isnull=True).update(
            refresh_revoked_at=now, access_revoked_at=now, revoke_reason="admin"
        )
        changed += rows.filter(access_revoked_at__isnull=True).update(access_revoked_at=now)
    else:
        raise BadInput(
            "action must be expire_access, expire_refresh, expire_codes, expire_device_codes "
            "or revoke."
        )
    return _json({"client_id": app.client_id, "changed": changed})


@admin_api(("POST",))
def introspect(request: HttpRequest) -> HttpResponse:
    """What a token is and whom it acts as (for tests; Bipsync documents no introspection)."""
    raw = _str(_body(request), "token")
    hashed = digest(raw)
    row = (
        Token.objects.select_related("application", "tenant")
        .filter(Q(access_hash=hashed) | Q(refresh_hash=hashed))
        .first()
    )
    if row is None:
        return _json({"active": False})
    now = timezone.now()
    expires_at: datetime | None
    if row.access_hash == hashed:
        token_type = "access_token"
        active = row.access_revoked_at is None and row.access_expires_at > now
        expires_at = row.access_expires_at
    else:
        token_type = "refresh_token"
        active = row.refresh_revoked_at is None and (row.refresh_expires_at or now) > now
        expires_at = row.refresh_expires_at
    return _json(
        {
            "active": active,
            "token_type": token_type,
            "kind": row.kind,
            "client_id": row.application.client_id,
            "tenant": row.tenant.slug,
            "grant_type": row.grant_type,
            "grant_id": str(row.grant_id),
            "user_id": row.user_id,
            "service_account_id": row.service_account_id,
            "team_id": row.team_id,
            "scope": row.scope,
            "granted_scope": row.granted_scope,
            "expires_at": expires_at.isoformat() if expires_at else None,
            "revoke_reason": row.revoke_reason or None,
        }
    )


_LIFETIME_FIELDS = {
    "access": "access_token_lifetime",
    "refresh": "refresh_token_lifetime",
    "code": "code_lifetime",
    "device": "device_code_lifetime",
    "device_interval": "device_poll_interval",
}


@admin_api(("GET", "PUT", "DELETE"))
def lifetimes_view(request: HttpRequest) -> HttpResponse:
    data = _body(request) if request.method == "PUT" else {}
    client_id = data.get("client_id") or request.GET.get("client_id")
    target: Application | RuntimeConfig
    if client_id:
        target = _application(str(client_id))
    else:
        target, _ = RuntimeConfig.objects.get_or_create(pk=RuntimeConfig.SINGLETON_ID)
    if request.method in ("PUT", "DELETE"):
        for key, field in _LIFETIME_FIELDS.items():
            if request.method == "DELETE":
                setattr(target, field, None)
            elif key in data:
                minimum = 0 if key == "device_interval" else 1
                setattr(target, field, _opt_int(data, key, minimum))
        target.save(update_fields=list(_LIFETIME_FIELDS.values()))
    app = target if isinstance(target, Application) else None
    effective = runtime.lifetimes(app)
    return _json(
        {
            "client_id": app.client_id if app else None,
            "access": effective.access,
            "refresh": effective.refresh,
            "code": effective.code,
            "device": effective.device,
            "device_interval": effective.device_interval,
        }
    )


def fault_json(fault: Fault) -> dict[str, Any]:
    return {
        "id": fault.pk,
        "target": fault.target,
        "kind": fault.kind,
        "status": fault.status_code,
        "delay_ms": fault.delay_ms,
        "when": fault.when,
        "keep": fault.keep,
        "remaining": fault.remaining,
        "tenant": fault.tenant_slug or None,
        "client_id": fault.client_id or None,
        "grant_type": fault.grant_type or None,
        "path_prefix": fault.path_prefix or None,
        "alter": json.loads(fault.alter) if fault.alter else None,
        "probability": fault.probability,
        "method": fault.method or None,
    }


@admin_api(("GET", "POST", "DELETE"))
def faults_view(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _json([fault_json(f) for f in Fault.objects.all()])
    if request.method == "DELETE":
        rows = Fault.objects.all()
        if request.GET.get("client_id"):
            rows = rows.filter(client_id=request.GET["client_id"])
        if request.GET.get("target"):
            rows = rows.filter(target=request.GET["target"])
        deleted, _ = rows.delete()
        return _json({"deleted": deleted})
    data = _body(request)
    target = _str(data, "target", FaultTarget.TOKEN)
    kind = _str(data, "kind")
    if target not in FaultTarget.values:
        raise BadInput(f"target must be one of {', '.join(FaultTarget.values)}.")
    if kind not in FaultKind.values:
        raise BadInput(f"kind must be one of {', '.join(FaultKind.values)}.")
    status = _opt_int(data, "status", 100)
    if status is not None and not 400 <= status <= 599:
        raise BadInput("status must be an HTTP error status (400-599).")
    when = _str(data, "when", "before")
    if when not in ("before", "after"):
        raise BadInput("when must be before or after.")
    alter = data.get("alter")
    if alter is not None and not isinstance(alter, dict):
        raise BadInput("alter must be a JSON object of the members to set (null removes one).")
    if kind in LISTING_FAULTS and target != FaultTarget.API:
        raise BadInput(f"{kind} changes REST listings: its target must be api.")
    probability = data.get("probability", 1.0)
    if isinstance(probability, bool) or not isinstance(probability, int | float):
        raise BadInput("probability must be a number between 0 and 1.")
    if not 0.0 < float(probability) <= 1.0:
        raise BadInput("probability must be more than 0 and at most 1.")
    method = (_str(data, "method", "") or "").upper()
    if method and method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        raise BadInput("method must be GET, POST, PUT, PATCH or DELETE.")
    fault = Fault.objects.create(
        target=target,
        kind=kind,
        status_code=status or (429 if kind == FaultKind.RATE_LIMIT else 503),
        delay_ms=_opt_int(data, "delay_ms") or 0,
        when=when,
        keep=_opt_int(data, "keep") or 0,
        remaining=_opt_int(data, "count", 1),
        tenant_slug=_str(data, "tenant", "") or "",
        client_id=_str(data, "client_id", "") or "",
        grant_type=_str(data, "grant_type", "") or "",
        path_prefix=_str(data, "path_prefix", "") or "",
        alter=json.dumps(alter) if alter is not None else "",
        probability=float(probability),
        method=method,
    )
    return _json(fault_json(fault), status=201)


@admin_api(("GET", "DELETE"))
def counters_view(request: HttpRequest) -> HttpResponse:
    client_id = request.GET.get("client_id")
    if request.method == "DELETE":
        rows = EndpointCounter.objects.all()
        if client_id:
            rows = rows.filter(client_id=client_id)
        deleted, _ = rows.delete()
        return _json({"deleted": deleted})
    return _json(runtime.counters(client_id))
