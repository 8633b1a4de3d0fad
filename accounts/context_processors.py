from __future__ import annotations

from django.http import HttpRequest

from accounts.models import Membership, Team, User
from accounts.teams import current_team


def teams(request: HttpRequest) -> dict[str, Team | list[Membership] | None]:
    """The user's teams for the switcher, and the team the page is about."""
    user = getattr(request, "user", None)
    if not isinstance(user, User):
        return {"current_team": None, "my_memberships": []}
    team = getattr(request, "team", None) or current_team(request)
    return {"current_team": team, "my_memberships": list(user.memberships_with_teams())}
