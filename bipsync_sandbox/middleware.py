"""Route a request to its tenant by matching the shared host templates.

``http://127.0.0.1:8100/t/acme/api/v1/oauth/token`` (path based) or
``https://acme-api.bipsync.test/v1/oauth/token`` (host based) both become tenant ``acme`` with the
internal path ``/_api/v1/oauth/token``; the URLconf only knows the internal ``/_api/`` and ``/_web/``
trees. The request's own ``path`` (what the client sent) is left untouched.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from bipsync_sandbox import hosts
from bipsync_sandbox.authserver import fastdb
from bipsync_sandbox.identity.models import Tenant

API_PREFIX = "/_api"
WEB_PREFIX = "/_web"
_TENANT_ATTR = "sandbox_tenant"


def get_tenant(request: HttpRequest) -> Tenant:
    tenant = getattr(request, _TENANT_ATTR, None)
    if not isinstance(tenant, Tenant):
        raise LookupError("This request was not routed to a tenant.")
    return tenant


class TenantRoutingMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path.startswith((API_PREFIX + "/", WEB_PREFIX + "/")) or path in (
            API_PREFIX,
            WEB_PREFIX,
        ):
            # The internal trees are reachable only through a tenant's base URL.
            return JsonResponse({"error": "not_found"}, status=404)
        host = request.get_host()
        for template, prefix in (
            (hosts.api_template(), API_PREFIX),
            (hosts.web_template(), WEB_PREFIX),
        ):
            match = template.match(host, path)
            if match is None:
                continue
            tenant = fastdb.tenant_by_slug(match.tenant)
            if tenant is None:
                return _unknown_tenant(request, prefix)
            setattr(request, _TENANT_ATTR, tenant)
            request.path_info = prefix + match.rest
            if _holds_nul(request):
                return _nul_refused(request, prefix)
            break
        return self.get_response(request)


def _holds_nul(request: HttpRequest) -> bool:
    """A NUL in a query or form parameter. No OAuth parameter may hold one (RFC 6749 Appendix A:
    every value is made of %x20-7E and, for a few, other printable characters), no REST
    parameter needs one, and PostgreSQL text cannot store one: refused before any view sees it."""
    try:
        fields = [*request.GET.lists(), *request.POST.lists()]
    except Exception:  # an unreadable body is the view's to refuse, in its own words
        return False
    return any("\x00" in name or any("\x00" in v for v in values) for name, values in fields)


def _nul_refused(request: HttpRequest, prefix: str) -> HttpResponse:
    message = "A parameter holds a NUL character, which no Bipsync parameter may contain."
    if prefix == API_PREFIX:
        return JsonResponse({"error": "invalid_request", "error_description": message}, status=400)
    context = {"title": "Bad request", "message": message}
    return render(request, "sandbox/error.html", context, status=400)


def _unknown_tenant(request: HttpRequest, prefix: str) -> HttpResponse:
    if prefix == API_PREFIX:
        return JsonResponse(
            {
                "error": "not_found",
                "error_description": "There is no Bipsync tenant at this address.",
            },
            status=404,
        )
    return render(
        request,
        "sandbox/error.html",
        {"title": "Unknown Bipsync site", "message": "There is no Bipsync tenant at this address."},
        status=404,
    )
