from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.teams import TeamRequest, team_view
from bipsync_partner.connections.forms import ConnectForm
from bipsync_partner.connections.kinds import Kind
from bipsync_partner.teamhome.overview import overview


@require_GET
@team_view()
def team_home(request: TeamRequest) -> HttpResponse:
    summary = overview(request)
    is_admin = request.membership.is_admin
    # Admins most often start with the team's service account: it syncs without more settings.
    kind = Kind.SERVICE_ACCOUNT if is_admin else Kind.USER
    form = ConnectForm(initial={"tenant": summary.connect_tenant, "kind": kind})
    return render(
        request,
        "teamhome/overview.html",
        {
            "team": request.team,
            "overview": summary,
            "is_admin": is_admin,
            "connect_form": form,
        },
    )
