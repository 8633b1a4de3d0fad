"""The sandbox's root page: what this server is, where its tenants live, how to make the demo one.

Served on any address that is not a tenant's (with path-based templates, ``/`` of the server).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from bipsync_sandbox import hosts
from bipsync_sandbox.identity.models import Tenant

# Test runs create a tenant per test; the page lists a few and counts the rest.
LISTED_TENANTS = 20


@require_safe
def about_page(request: HttpRequest) -> HttpResponse:
    tenants = list(Tenant.objects.order_by("slug")[: LISTED_TENANTS + 1])
    more = Tenant.objects.count() - LISTED_TENANTS if len(tenants) > LISTED_TENANTS else 0
    context = {
        "api_template": hosts.api_template().template,
        "web_template": hosts.web_template().template,
        "tenants": tenants[:LISTED_TENANTS],
        "more_tenants": more,
    }
    return render(request, "sandbox/about.html", context)
