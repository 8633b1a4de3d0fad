"""Who may see which connection of a team, and the research synced through it.

One rule for both apps: the connections pages and the notices banner list connections with
:func:`visible_connections`; the sync pages and the research browser filter synced rows with
:func:`research_visible_to`.

- Connections: admins see every connection of the team; members their own personal connections
  and the team-wide ones (service account, machine).
- Research: what a member's own connection reads is what Bipsync shows *that person* (private
  notes included), so it is shown to that person only, admins included; research of the
  team-wide connections is for every member. Only connections that still work count: the
  research of a disconnected or broken connection is kept but not shown.
"""

from __future__ import annotations

from django.db import models

from accounts.models import Membership, Team, User
from bipsync_partner.connections.kinds import TEAM_WIDE
from bipsync_partner.connections.models import Connection

#: Connections whose research is shown (working, or retrying on their own).
SHOWN_STATUSES = (Connection.Status.ACTIVE, Connection.Status.FAILING)


def visible_connections(
    team: Team, user: User, membership: Membership | None
) -> models.QuerySet[Connection]:
    """What ``user`` may see of ``team``'s connections: admins everything; members their own
    personal connections and the team-wide ones (service account, machine)."""
    qs = Connection.objects.filter(team=team)
    if membership is not None and membership.is_admin:
        return qs
    return qs.filter(models.Q(user=user) | models.Q(user__isnull=True))


def research_visible_to(team: Team, user: User) -> models.Q:
    """A filter on synced rows (anything with ``team`` and ``connection``) that ``user`` may
    read: those of the team's team-wide connections, and of the user's own."""
    team_wide = models.Q(connection__kind__in=TEAM_WIDE)
    mine = models.Q(connection__user=user)
    return models.Q(team=team, connection__status__in=SHOWN_STATUSES) & (team_wide | mine)
