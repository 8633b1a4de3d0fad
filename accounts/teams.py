"""The one place that decides who may see and manage a team's pages.

Every team-scoped view takes the team's slug from the URL and calls ``team_view``. An outsider
gets 404 so that they never learn another team's objects exist; a member asking for an
admin-only page gets 403, because they already know the team.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Concatenate, ParamSpec, TypeVar

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase
from django.urls import reverse

from accounts.models import Membership, Team, User

SESSION_KEY = "current_team_id"
#: The URL name of the page a team starts from. The project's URLconf names it (the overview
#: shows connections and syncs, which accounts knows nothing of); accounts only links to it.
TEAM_HOME = "team_home"

P = ParamSpec("P")
# HttpResponseBase: a team view may stream (StreamingHttpResponse is not an HttpResponse).
R = TypeVar("R", bound=HttpResponseBase)


class TeamRequest(HttpRequest):
    """An HttpRequest that ``team_view`` has checked: it carries the team and the membership."""

    user: User
    team: Team
    membership: Membership


def membership_or_404(user: User, team_slug: str) -> Membership:
    membership = (
        Membership.objects.select_related("team").filter(user=user, team__slug=team_slug).first()
    )
    if membership is None:
        raise Http404("No such team.")
    return membership


def team_view(
    *, admin: bool = False
) -> Callable[[Callable[Concatenate[TeamRequest, P], R]], Callable[..., R]]:
    """Require a signed-in member of the URL's team (and the admin role when ``admin``)."""

    def decorator(view: Callable[Concatenate[TeamRequest, P], R]) -> Callable[..., R]:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, team_slug: str, *args: P.args, **kwargs: P.kwargs) -> R:
            assert isinstance(request.user, User)
            membership = membership_or_404(request.user, team_slug)
            if admin and not membership.is_admin:
                raise PermissionDenied("Only team admins can do this.")
            request.team = membership.team  # type: ignore[attr-defined]
            request.membership = membership  # type: ignore[attr-defined]
            request.session[SESSION_KEY] = membership.team_id
            return view(request, *args, **kwargs)  # type: ignore[arg-type]

        return wrapper

    return decorator


def current_team(request: HttpRequest) -> Team | None:
    """The team the user last worked in, else their first team."""
    user = request.user
    if not isinstance(user, User):
        return None
    team_id = request.session.get(SESSION_KEY)
    memberships = user.memberships_with_teams()
    chosen = memberships.filter(team_id=team_id).first() if team_id else None
    chosen = chosen or memberships.first()
    return chosen.team if chosen else None


def team_home_url(team: Team) -> str:
    return reverse(TEAM_HOME, kwargs={"team_slug": team.slug})
