from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.forms import EmailAuthenticationForm, SwitchTeamForm
from accounts.models import User
from accounts.teams import TeamRequest, current_team, membership_or_404, team_view


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    authentication_form = EmailAuthenticationForm
    redirect_authenticated_user = True


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"
    success_url = "/"

    def form_valid(self, form):  # type: ignore[no-untyped-def]
        messages.success(self.request, "Your password has been changed.")
        return super().form_valid(form)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    team = current_team(request)
    if team is None:
        return render(request, "accounts/no_team.html")
    return redirect("accounts:team", team_slug=team.slug)


@require_POST
@login_required
def switch_team(request: HttpRequest) -> HttpResponse:
    form = SwitchTeamForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest("Choose a team to switch to.")
    assert isinstance(request.user, User)
    membership = membership_or_404(request.user, form.cleaned_data["team"])
    return redirect("accounts:team", team_slug=membership.team.slug)


@team_view()
def team(request: TeamRequest) -> HttpResponse:
    return render(request, "accounts/team.html", {"team": request.team})


@team_view(admin=True)
def members(request: TeamRequest) -> HttpResponse:
    memberships = request.team.memberships.select_related("user").order_by("user__email")
    return render(request, "accounts/members.html", {"memberships": memberships})
