from __future__ import annotations

from django.http import HttpRequest

from accounts.models import Membership, Team, User
from accounts.teams import current_team


def teams(request: HttpRequest) -> dict[str, Team | list[Membership] | bool | None]:
    """The user's teams for the switcher, the team the page is about, and whether the user is
    an admin of it (the navigation's Members link)."""
    user = getattr(request, "user", None)
    if not isinstance(user, User):
        return {"current_team": None, "my_memberships": [], "current_membership_is_admin": False}
    team = getattr(request, "team", None) or current_team(request)
    memberships = list(user.memberships_with_teams())
    is_admin = any(m.is_admin for m in memberships if team is not None and m.team_id == team.pk)
    return {
        "current_team": team,
        "my_memberships": memberships,
        "current_membership_is_admin": is_admin,
    }
