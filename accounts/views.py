from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth import authenticate, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_http_methods, require_POST

from accounts import invitations
from accounts.forms import (
    EmailAuthenticationForm,
    InvitedSignInForm,
    InviteForm,
    RoleForm,
    SignUpForm,
    SwitchTeamForm,
)
from accounts.invitations import InvitationError
from accounts.models import Invitation, LastAdminError, Membership, User
from accounts.signals import member_removed, removal_preview
from accounts.teams import (
    SESSION_KEY,
    TeamRequest,
    current_team,
    membership_or_404,
    team_home_url,
    team_view,
)


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
    return redirect(team_home_url(team))


@require_POST
@login_required
def switch_team(request: HttpRequest) -> HttpResponse:
    form = SwitchTeamForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest("Choose a team to switch to.")
    assert isinstance(request.user, User)
    membership = membership_or_404(request.user, form.cleaned_data["team"])
    return redirect(team_home_url(membership.team))


# --- Members (team admins) -------------------------------------------------------------------


def _members_page(
    request: TeamRequest,
    *,
    invite_form: InviteForm | None = None,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    team = request.team
    memberships = list(team.memberships.select_related("user").order_by("user__email"))
    admins = sum(1 for m in memberships if m.is_admin)
    now = timezone.now()
    pending = [
        (invitation, invitation.state(now))
        for invitation in Invitation.objects.open().filter(team=team).select_related("invited_by")
    ]
    return render(
        request,
        "accounts/members.html",
        {
            "team": team,
            "memberships": memberships,
            "last_admin": admins <= 1,
            "invite_form": invite_form or InviteForm(),
            "pending": pending,
            "roles": Membership.Role.choices,
            "error": error,
        },
        status=status,
    )


def _membership_or_404(request: TeamRequest, membership_id: int) -> Membership:
    found = (
        Membership.objects.select_related("user", "team")
        .filter(team=request.team, pk=membership_id)
        .first()
    )
    if found is None:
        raise Http404("No such member in this team.")
    return found


@require_http_methods(["GET"])
@team_view(admin=True)
def members(request: TeamRequest) -> HttpResponse:
    return _members_page(request)


@require_POST
@team_view(admin=True)
def invite(request: TeamRequest) -> HttpResponse:
    form = InviteForm(request.POST)
    if not form.is_valid():
        return _members_page(request, invite_form=form, status=400)
    try:
        sent = invitations.invite(
            request.team, form.cleaned_data["email"], form.cleaned_data["role"], request.user
        )
    except InvitationError as exc:
        return _members_page(request, invite_form=form, error=exc.message, status=exc.status)
    messages.success(request, f"Invitation sent to {sent.invitation.email}.")
    return redirect("accounts:members", team_slug=request.team.slug)


@require_POST
@team_view(admin=True)
def revoke_invitation(request: TeamRequest, invitation_id: int) -> HttpResponse:
    try:
        invitation = invitations.revoke(request.team, invitation_id)
    except InvitationError as exc:
        return _members_page(request, error=exc.message, status=exc.status)
    messages.success(request, f"The invitation of {invitation.email} was withdrawn.")
    return redirect("accounts:members", team_slug=request.team.slug)


@require_POST
@team_view(admin=True)
def change_role(request: TeamRequest, membership_id: int) -> HttpResponse:
    membership = _membership_or_404(request, membership_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        return _members_page(request, error="Choose Admin or Member.", status=400)
    try:
        changed = request.team.set_role(membership, form.cleaned_data["role"])
    except LastAdminError as exc:
        return _members_page(request, error=str(exc), status=400)
    messages.success(request, f"{changed.user.email} is now {changed.get_role_display()}.")
    return redirect("accounts:members", team_slug=request.team.slug)


@require_http_methods(["GET", "POST"])
@team_view(admin=True)
def remove_member(request: TeamRequest, membership_id: int) -> HttpResponse:
    """A page that lists what the removal takes with it (GET), then the removal (POST)."""
    membership = _membership_or_404(request, membership_id)
    last_admin = membership.is_admin and request.team.admins().count() <= 1
    if last_admin or request.method == "GET":
        return render(
            request,
            "accounts/remove_member.html",
            {
                "team": request.team,
                "membership": membership,
                "consequences": removal_preview(membership),
                "refusal": str(LastAdminError(request.team)) if last_admin else "",
            },
            status=400 if last_admin else 200,
        )
    user = membership.user
    try:
        request.team.remove_member(membership)
    except LastAdminError as exc:
        return _members_page(request, error=str(exc), status=400)
    member_removed.send(sender=Membership, team=request.team, user=user, actor=request.user)
    messages.success(request, f"{user.email} was removed from {request.team}.")
    if user.pk == request.user.pk:
        request.session.pop(SESSION_KEY, None)
        return redirect("home")
    return redirect("accounts:members", team_slug=request.team.slug)


# --- The invitee's page ----------------------------------------------------------------------


def private_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The invitation page's address carries its token: no cache keeps the answer
    (RFC 9111 §5.2.2.5), and a ``Referer`` from it names the origin only, never the address.
    ``strict-origin`` rather than ``no-referrer``: with no referrer the browser sends
    ``Origin: null`` on the page's own form, and CSRF protection rightly refuses that."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        add_never_cache_headers(response)
        response.headers["Referrer-Policy"] = "strict-origin"
        return response

    return wrapper


def _refusal(request: HttpRequest, error: InvitationError) -> HttpResponse:
    return render(
        request, "accounts/invitation_error.html", {"message": error.message}, status=error.status
    )


@private_page
@require_http_methods(["GET", "POST"])
def invitation(request: HttpRequest) -> HttpResponse:
    """Accept an invitation: sign up (no account yet), sign in (an account exists), or join
    (signed in as the invited address)."""
    token = request.POST.get("token", "") if request.method == "POST" else ""
    token = token or request.GET.get("token", "")
    try:
        found = invitations.invitation_for(token)
        return _invitation_step(request, found, token)
    except InvitationError as exc:
        return _refusal(request, exc)


def _invitation_step(request: HttpRequest, found: Invitation, token: str) -> HttpResponse:
    user = request.user if isinstance(request.user, User) else None
    has_account = User.objects.filter(email__iexact=found.email).exists()
    context: dict[str, Any] = {"invitation": found, "token": token, "user_matches": False}
    if user is not None:
        invitations.refuse_unless_invitee(found, user)
        context["user_matches"] = True
        if request.method == "POST":
            invitations.accept(found, user)
            return _joined(request, found)
        return render(request, "accounts/invitation.html", context)
    if has_account:
        form: InvitedSignInForm | SignUpForm = InvitedSignInForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            signed_in = authenticate(
                request, username=found.email, password=form.cleaned_data["password"]
            )
            if isinstance(signed_in, User):
                invitations.accept(found, signed_in)
                login(request, signed_in)
                return _joined(request, found)
            form.add_error("password", f"That is not the password of {found.email}.")
    else:
        form = SignUpForm(request.POST or None, email=found.email)
        if request.method == "POST" and form.is_valid():
            new_user = invitations.sign_up_and_accept(
                found, form.cleaned_data["password1"], form.cleaned_data["name"]
            )
            login(request, new_user, backend="django.contrib.auth.backends.ModelBackend")
            return _joined(request, found)
    context.update(form=form, has_account=has_account)
    status = 400 if request.method == "POST" else 200
    return render(request, "accounts/invitation.html", context, status=status)


def _joined(request: HttpRequest, found: Invitation) -> HttpResponse:
    request.session[SESSION_KEY] = found.team_id
    messages.success(request, f"Welcome to {found.team}.")
    return redirect(team_home_url(found.team))
