"""A member leaves a team: their own Bipsync connections in it go with them.

A personal connection acts as that person at Bipsync (connections/kinds.py), so it must not keep
syncing for a team they have left. The accounts app asks before a removal what it will take with
it (``member_removal_preview``) and says when it happened (``member_removed``); these receivers
answer both, and disconnect through the one disconnect service (tokens wiped, revoked at Bipsync,
history kept).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.dispatch import receiver

from accounts.models import Membership, Team, User
from accounts.signals import member_removal_preview, member_removed
from bipsync_partner.connections.disconnect import disconnect
from bipsync_partner.connections.kinds import PERSONAL
from bipsync_partner.connections.models import Connection


def personal_connections(team: Team, user: User) -> QuerySet[Connection]:
    return Connection.objects.live().filter(team=team, user=user, kind__in=PERSONAL)


@receiver(member_removal_preview, dispatch_uid="connections.departure_preview")
def preview(sender: Any, membership: Membership, **kwargs: Any) -> list[str]:
    return [
        f"Disconnects their own {conn.get_kind_display().lower()} connection to {conn.tenant} "
        "(its tokens are deleted here and revoked at Bipsync; its history stays)."
        for conn in personal_connections(membership.team, membership.user).order_by("tenant")
    ]


@receiver(member_removed, dispatch_uid="connections.departure_disconnect")
def disconnect_personal(sender: Any, team: Team, user: User, actor: User, **kwargs: Any) -> None:
    for conn in personal_connections(team, user):
        disconnect(conn, actor)
