"""Who may see which connection of a team, and whose research.

One rule for both apps: the connections pages and the notices banner list connections with
:func:`visible_connections`; the sync pages and the research browser filter documents with
``bipsync_partner.sync.visibility.research_visible_to``, built on :func:`research_sources`.

- Connections: admins see every connection of the team; members their own personal connections
  and the team-wide ones (service account, machine).
- Research: what a member's own connection reads is what Bipsync shows *that person* (private
  notes included), so it is shown to that person only, admins included; research of the
  team-wide connections is for every member. A connection that needs reconnecting (or is
  retrying) still counts: what it brought stays shown, marked stale, until it is reconnected
  or disconnected. A disconnected connection does not count (the customer withdrew access; a
  disconnect removes what only it could see).
"""

from __future__ import annotations

from django.db import models

from accounts.models import Membership, Team, User
from bipsync_partner.connections.kinds import TEAM_WIDE
from bipsync_partner.connections.models import Connection

#: Connections that read Bipsync now (working, or retrying on their own); the research of the
#: others is shown as stale.
USABLE_STATUSES = (Connection.Status.ACTIVE, Connection.Status.FAILING)


def visible_connections(
    team: Team, user: User, membership: Membership | None
) -> models.QuerySet[Connection]:
    """What ``user`` may see of ``team``'s connections: admins everything; members their own
    personal connections and the team-wide ones (service account, machine)."""
    qs = Connection.objects.filter(team=team)
    if membership is not None and membership.is_admin:
        return qs
    return qs.filter(models.Q(user=user) | models.Q(user__isnull=True))


def research_sources(team: Team, user: User) -> models.QuerySet[Connection]:
    """The connections whose research ``user`` may read in ``team``: the team-wide ones and the
    user's own, disconnected ones excepted (needing a reconnect does not hide them)."""
    return (
        Connection.objects.filter(team=team)
        .filter(models.Q(kind__in=TEAM_WIDE) | models.Q(user=user))
        .exclude(status=Connection.Status.DISCONNECTED)
    )


def team_research_sources(team: Team) -> models.QuerySet[Connection]:
    """The connections whose research is the team's as a whole (what an API key of the team
    reads): the team-wide ones, disconnected ones excepted. Members' own connections read what
    Bipsync shows that person, which is theirs alone."""
    return Connection.objects.filter(team=team, kind__in=TEAM_WIDE).exclude(
        status=Connection.Status.DISCONNECTED
    )


def is_usable(connection: Connection) -> bool:
    """Whether the connection reads Bipsync now; else what it brought is stale."""
    return connection.status in USABLE_STATUSES
