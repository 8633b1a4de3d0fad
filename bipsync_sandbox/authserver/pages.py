"""Pages on a tenant's web host: sign in, consent, device verification.

The signed-in user is remembered per tenant in the sandbox's own session cookie, so a browser can be
signed in to several emulated customers at once.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from authlib.oauth2.rfc6749.errors import InsecureTransportError, OAuth2Error
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from bipsync_sandbox.authserver import scopes as scope_words
from bipsync_sandbox.authserver.models import (
    Application,
    DeviceCode,
    DeviceStatus,
    PrincipalKind,
    ServiceAccount,
)
from bipsync_sandbox.authserver.server import (
    Principal,
    SandboxAuthorizationServer,
    SandboxRequest,
    normalize_user_code,
    query_parameters,
)
from bipsync_sandbox.identity.models import Team, Tenant, User
from bipsync_sandbox.middleware import get_tenant


def _session_key(tenant: Tenant) -> str:
    return f"sandbox_user:{tenant.pk}"


def signed_in_user(request: HttpRequest, tenant: Tenant) -> User | None:
    user_id = request.session.get(_session_key(tenant))
    if not user_id:
        return None
    return User.objects.filter(pk=user_id, tenant=tenant, is_active=True).first()


def _error_page(request: HttpRequest, title: str, message: str, status: int = 400) -> HttpResponse:
    return render(
        request, "sandbox/error.html", {"title": title, "message": message}, status=status
    )


def _login_redirect(request: HttpRequest, tenant: Tenant) -> HttpResponse:
    return HttpResponseRedirect(
        tenant.web_url("/login") + "?" + urlencode({"next": request.get_full_path()})
    )


def _safe_next(tenant: Tenant, raw: str) -> str:
    # Only paths on this site: an open redirect on a sign-in page is a phishing aid.
    if raw.startswith("/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return tenant.web_url("/")


@require_http_methods(["GET", "POST"])
def login_page(request: HttpRequest) -> HttpResponse:
    tenant = get_tenant(request)
    next_url = _safe_next(tenant, request.POST.get("next") or request.GET.get("next") or "")
    error = ""
    email = ""
    if request.method == "POST":
        email = request.POST.get("email", "").strip().lower()
        password = request.POST.get("password", "")
        user = User.objects.filter(tenant=tenant, email=email, is_active=True).first()
        if user is not None and user.check_password(password):
            request.session.cycle_key()
            request.session[_session_key(tenant)] = user.pk
            return HttpResponseRedirect(next_url)
        if user is None:
            make_password(password)  # same work as a real check: no user enumeration by timing
        error = "That email and password do not match a user of this site."
    return render(
        request,
        "sandbox/login.html",
        {"tenant": tenant, "next": next_url, "error": error, "email": email},
        status=401 if error else 200,
    )


@require_http_methods(["POST"])
def logout_page(request: HttpRequest) -> HttpResponse:
    tenant = get_tenant(request)
    request.session.pop(_session_key(tenant), None)
    return HttpResponseRedirect(tenant.web_url("/login"))


def home_page(request: HttpRequest) -> HttpResponse:
    tenant = get_tenant(request)
    user = signed_in_user(request, tenant)
    return render(request, "sandbox/home.html", {"tenant": tenant, "user": user})


def _admin_teams(user: User, tenant: Tenant) -> list[Team]:
    return list(
        Team.objects.filter(tenant=tenant, memberships__user=user, memberships__is_admin=True)
        .distinct()
        .order_by("name")
    )


def _wants_service_account(app: Application, params: dict[str, str]) -> bool:
    if not app.service_account:
        return False
    if settings.SANDBOX_SERVICE_ACCOUNT_SELECTOR == "parameter":
        return params.get("account_type") == "service_account"
    return True


def _service_account_principal(
    request: HttpRequest, app: Application, user: User, admin_teams: list[Team]
) -> Principal | None:
    """The app's service account in the team the approving admin chose (only admins may approve)."""
    chosen = request.POST.get("team_id") or (admin_teams[0].pk if len(admin_teams) == 1 else "")
    team = next((t for t in admin_teams if t.pk == chosen), None)
    if team is None:
        return None
    account, _ = ServiceAccount.objects.get_or_create(
        application=app, team=team, defaults={"name": f"{app.name} (service account)"}
    )
    return Principal(PrincipalKind.SERVICE_ACCOUNT, user=user, service_account=account, team=team)


@require_http_methods(["GET", "POST"])
def authorize_page(request: HttpRequest) -> HttpResponse:
    """{web}/oauth/authorize: validate, sign in, ask for consent, redirect with code or error."""
    tenant = get_tenant(request)
    server = SandboxAuthorizationServer(tenant)
    data, datalist = query_parameters(request)
    try:
        oauth_request = SandboxRequest(request, data, datalist)
    except InsecureTransportError:
        return _error_page(request, "Insecure address", "OAuth requires https here.")
    try:
        grant = server.get_consent_grant(oauth_request, end_user=None)
    except OAuth2Error as error:
        if not error.redirect_uri:
            # An unknown client or an unregistered redirect URI: a page, never a redirect [doc].
            return _error_page(
                request,
                "This application cannot sign in with Bipsync",
                error.description or "The authorization request is not valid.",
            )
        response = server.handle_error_response(oauth_request, error)
        server.issuer.add_issuer_parameter(server, response)
        return response

    user = signed_in_user(request, tenant)
    if user is None:
        return _login_redirect(request, tenant)

    app: Application = oauth_request.client
    as_service_account = _wants_service_account(app, data)
    admin_teams = _admin_teams(user, tenant) if as_service_account else []
    context: dict[str, Any] = {
        "tenant": tenant,
        "user": user,
        "application": app,
        "scopes": scope_words.describe(oauth_request.scope),
        "service_account": as_service_account,
        "admin_teams": admin_teams,
        "action": request.get_full_path(),
    }
    if request.method == "GET":
        status = 403 if as_service_account and not admin_teams else 200
        return render(request, "sandbox/consent.html", context, status=status)

    decision = request.POST.get("decision")
    if decision == "deny":
        denied: HttpResponse = server.create_authorization_response(
            oauth_request, grant_user=None, grant=grant
        )
        return denied
    if decision != "approve":
        return _error_page(request, "Choose Approve or Deny", "The form was not understood.")
    principal: Principal | None
    if as_service_account:
        principal = _service_account_principal(request, app, user, admin_teams)
        if principal is None:
            context["error"] = "Only an admin of the chosen team can approve a service account."
            return render(request, "sandbox/consent.html", context, status=403)
    else:
        principal = Principal(PrincipalKind.USER, user=user)
    with transaction.atomic():
        approved: HttpResponse = server.create_authorization_response(
            oauth_request, grant_user=principal, grant=grant
        )
    return approved


def _pending_device(tenant: Tenant, user_code: str) -> DeviceCode | None:
    return (
        DeviceCode.objects.select_related("application")
        .filter(
            tenant=tenant,
            user_code=user_code,
            status=DeviceStatus.PENDING,
            expires_at__gt=timezone.now(),
        )
        .first()
    )


@require_http_methods(["GET", "POST"])
def device_page(request: HttpRequest) -> HttpResponse:
    """{web}/oauth/device and ?user_code=XXXX [doc]: enter or confirm a code, Approve or Deny."""
    tenant = get_tenant(request)
    user = signed_in_user(request, tenant)
    if user is None:
        return _login_redirect(request, tenant)
    raw_code = request.POST.get("user_code") or request.GET.get("user_code") or ""
    user_code = normalize_user_code(raw_code)
    context: dict[str, Any] = {"tenant": tenant, "user": user, "user_code": user_code}
    if not user_code:
        return render(request, "sandbox/device_entry.html", context)
    device = _pending_device(tenant, user_code)
    if device is None:
        context["error"] = (
            "That code is not valid or has expired. Check it, or start again on the device."
        )
        return render(request, "sandbox/device_entry.html", context, status=400)
    app = device.application
    as_service_account = app.service_account
    admin_teams = _admin_teams(user, tenant) if as_service_account else []
    context.update(
        {
            "application": app,
            "scopes": scope_words.describe(device.scope),
            "service_account": as_service_account,
            "admin_teams": admin_teams,
        }
    )
    if request.method == "GET":
        status = 403 if as_service_account and not admin_teams else 200
        return render(request, "sandbox/device_confirm.html", context, status=status)

    decision = request.POST.get("decision")
    if decision not in ("approve", "deny"):
        return _error_page(request, "Choose Approve or Deny", "The form was not understood.")
    with transaction.atomic():
        locked = (
            DeviceCode.objects.select_for_update()
            .filter(pk=device.pk, status=DeviceStatus.PENDING, expires_at__gt=timezone.now())
            .first()
        )
        if locked is None:
            context["error"] = "That code is not valid or has expired."
            return render(request, "sandbox/device_entry.html", context, status=400)
        if decision == "deny":
            locked.status = DeviceStatus.DENIED
            locked.user = user
            locked.save(update_fields=["status", "user"])
            return render(request, "sandbox/device_done.html", {**context, "approved": False})
        if as_service_account:
            principal = _service_account_principal(request, app, user, admin_teams)
            if principal is None:
                context["error"] = "Only an admin of the chosen team can approve a service account."
                return render(request, "sandbox/device_confirm.html", context, status=403)
            locked.service_account = principal.service_account
        locked.status = DeviceStatus.APPROVED
        locked.user = user
        locked.save(update_fields=["status", "user", "service_account"])
    return render(request, "sandbox/device_done.html", {**context, "approved": True})
