"""Which research documents a member may read: the filter every research page uses.

A document is visible to a member when one of the connections whose research that member may
read (:func:`~bipsync_partner.connections.visibility.research_sources`: the team's team-wide
connections and the member's own, not disconnected) has a sighting of it. The filter is an
``EXISTS`` on the sightings' primary key (document, connection) with the handful of source
connections as a list: one index probe per candidate document, so the browser's
``ORDER BY bipsync_modified DESC LIMIT 50`` walks ``research_recent`` and stops after fifty
visible rows, at a million documents as at a hundred.
"""

from __future__ import annotations

from django.db import models

from accounts.models import Team, User
from bipsync_partner.connections.visibility import research_sources, team_research_sources
from bipsync_partner.sync.models import DocumentSighting


def source_ids(team: Team, user: User) -> list[object]:
    """The ids of the connections whose research ``user`` may read (a few per team)."""
    return list(research_sources(team, user).values_list("pk", flat=True))


def research_visible_to(team: Team, user: User) -> models.Q:
    """A filter on :class:`~bipsync_partner.sync.models.ResearchDocument`: the team's documents
    that ``user`` may read, deleted ones included (add ``deleted_at__isnull=True`` for the live
    ones). Reads the source connections once, when called."""
    seen = DocumentSighting.objects.filter(
        document=models.OuterRef("pk"), connection_id__in=source_ids(team, user)
    )
    return models.Q(team=team) & models.Q(models.Exists(seen))


def research_visible_to_team(team: Team) -> models.Q:
    """The same filter for the team as a whole (an API key of the team): documents a
    team-wide connection sees (:func:`~bipsync_partner.connections.visibility.
    team_research_sources`), none that only a member's own connection sees."""
    sources = list(team_research_sources(team).values_list("pk", flat=True))
    seen = DocumentSighting.objects.filter(
        document=models.OuterRef("pk"), connection_id__in=sources
    )
    return models.Q(team=team) & models.Q(models.Exists(seen))
