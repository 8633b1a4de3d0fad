"""The Webhooks pages: a team's endpoints (list, add), each endpoint's page (edit its address and
event types, disable/enable, rotate its secret) and its delivery log with replay. Admins only:
an endpoint receives the team's data.

A new secret is shown once, in the answer to the POST that made it (never stored in plaintext
anywhere a page could show it again), with ``Cache-Control: no-store``.
"""

from __future__ import annotations

from typing import Any, Final
from uuid import UUID

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts.teams import TeamRequest, team_view
from bipsync_partner.events import addresses, delivery
from bipsync_partner.events.forms import EndpointForm
from bipsync_partner.events.models import Delivery, Endpoint
from bipsync_partner.events.signing import new_secret

PER_PAGE: Final = 50


def _endpoint_or_404(request: TeamRequest, endpoint_id: UUID) -> Endpoint:
    endpoint = Endpoint.objects.filter(team=request.team, id=endpoint_id).first()
    if endpoint is None:
        raise Http404("No such webhook endpoint.")
    return endpoint


def _with_secret(request: TeamRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    response = render(request, template, {"team": request.team, **context})
    response["Cache-Control"] = "no-store"
    return response


@never_cache
@require_http_methods(["GET", "POST"])
@team_view(admin=True)
def endpoints(request: TeamRequest) -> HttpResponse:
    form = EndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        endpoint = form.save(commit=False)
        endpoint.team = request.team
        endpoint.created_by = request.user
        endpoint.secret = secret = new_secret()
        endpoint.save()
        return _with_secret(
            request, "events/secret.html", {"endpoint": endpoint, "secret": secret, "new": True}
        )
    listed = Endpoint.objects.filter(team=request.team).order_by("created")
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "events/endpoints.html",
        {"team": request.team, "endpoints": listed, "form": form},
        status=status,
    )


@never_cache
@require_http_methods(["GET", "POST"])
@team_view(admin=True)
def endpoint(request: TeamRequest, endpoint_id: UUID) -> HttpResponse:
    found = _endpoint_or_404(request, endpoint_id)
    form = EndpointForm(request.POST or None, instance=found)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "The endpoint is saved.")
        return redirect("events:endpoint", team_slug=request.team.slug, endpoint_id=found.pk)
    status = request.GET.get("status", "")
    deliveries = Delivery.objects.filter(endpoint=found).select_related("event")
    if status in Delivery.Status.values:
        deliveries = deliveries.filter(status=status)
    else:
        status = ""
    page = Paginator(deliveries.order_by("-created", "-id"), PER_PAGE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "events/endpoint.html",
        {
            "team": request.team,
            "endpoint": found,
            "form": form,
            "page": page,
            "status": status,
            "statuses": Delivery.Status.choices,
            "overlap_until": found.previous_secret_until
            if found.previous_secret_until and found.previous_secret_until > timezone.now()
            else None,
        },
        status=400 if request.method == "POST" else 200,
    )


@require_POST
@team_view(admin=True)
def set_enabled(request: TeamRequest, endpoint_id: UUID) -> HttpResponse:
    found = _endpoint_or_404(request, endpoint_id)
    enable = request.POST.get("enabled") == "1"
    if enable:
        try:
            addresses.check(found.url)
        except addresses.AddressRefused as refused:
            messages.error(request, f"It stays disabled: {refused}")
            return redirect("events:endpoint", team_slug=request.team.slug, endpoint_id=found.pk)
    found.enabled = enable
    found.failing_since = None
    found.disabled_reason = "" if enable else f"Disabled by {request.user}."
    found.save(update_fields=["enabled", "failing_since", "disabled_reason"])
    messages.success(
        request,
        "The endpoint is enabled; replay what it missed from its log."
        if enable
        else "The endpoint is disabled: it receives nothing until enabled.",
    )
    return redirect("events:endpoint", team_slug=request.team.slug, endpoint_id=found.pk)


@never_cache
@require_POST
@team_view(admin=True)
def rotate(request: TeamRequest, endpoint_id: UUID) -> HttpResponse:
    found = _endpoint_or_404(request, endpoint_id)
    secret = found.rotate_secret(timezone.now())
    return _with_secret(
        request, "events/secret.html", {"endpoint": found, "secret": secret, "new": False}
    )


@require_POST
@team_view(admin=True)
def replay(request: TeamRequest, endpoint_id: UUID, delivery_id: int) -> HttpResponse:
    found = _endpoint_or_404(request, endpoint_id)
    row = Delivery.objects.filter(endpoint=found, id=delivery_id).first()
    if row is None:
        raise Http404("No such delivery.")
    if not found.enabled:
        messages.error(request, "Enable the endpoint first: a disabled endpoint receives nothing.")
    elif row.status == Delivery.Status.PENDING and row.attempts == 0:
        messages.error(request, "It has not been sent yet; it goes out on its own.")
    else:
        with transaction.atomic():
            delivery.replay(row)
        messages.success(request, f"{row.event.type} {row.event.uid} is sent again.")
    return redirect("events:endpoint", team_slug=request.team.slug, endpoint_id=found.pk)
