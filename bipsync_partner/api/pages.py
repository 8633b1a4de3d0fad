"""The team's API keys page (/teams/<team>/api-keys/), for team admins: list, create, revoke.

A new key is shown once, on the answer to the form that made it (never put in the session or a
message, which are stored); afterwards only its prefix is.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_POST

from accounts.teams import TeamRequest, team_view
from bipsync_partner.api.forms import ApiKeyForm
from bipsync_partner.api.keys import NewKey, create_key
from bipsync_partner.api.models import ApiKey


def _page(
    request: TeamRequest,
    form: ApiKeyForm | None = None,
    new: NewKey | None = None,
    status: int = 200,
) -> HttpResponse:
    answer = render(
        request,
        "api/keys.html",
        {
            "team": request.team,
            "keys": ApiKey.objects.filter(team=request.team).select_related("created_by"),
            "form": form or ApiKeyForm(),
            "new": new,
        },
        status=status,
    )
    add_never_cache_headers(answer)
    return answer


@require_GET
@team_view(admin=True)
def keys(request: TeamRequest) -> HttpResponse:
    return _page(request)


@require_POST
@team_view(admin=True)
def create(request: TeamRequest) -> HttpResponse:
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return _page(request, form=form, status=400)
    new = create_key(
        request.team, form.cleaned_data["name"], form.cleaned_data["scopes"], request.user
    )
    return _page(request, new=new, status=201)


@require_POST
@team_view(admin=True)
def revoke(request: TeamRequest, key_id: int) -> HttpResponse:
    key = ApiKey.objects.filter(team=request.team, pk=key_id).first()
    if key is None:
        raise Http404("No such API key.")
    key.revoke(request.user)
    messages.success(request, f"The key “{key.name}” ({key.masked}) was revoked.")
    return redirect("api:keys", team_slug=request.team.slug)
