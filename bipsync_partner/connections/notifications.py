"""Telling people that a connection needs reconnecting: one email to the team's admins, and a
banner on every page for the team's members until someone reconnects.

The token service sends :data:`~bipsync_partner.connections.signals.connection_needs_reconnect`
after it committed the change. The receiver opens a :class:`ReconnectNotice`; a partial unique
constraint allows one open notice per connection, so the email goes out once even if the signal
arrives twice (two processes, a retried task). Reconnecting closes the notice
(:func:`clear_notices`), and a later failure opens a new one and emails again.

The banner (:func:`banner`, a context processor) reads connection statuses directly, so it clears
the moment a connection is active again.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, models, transaction
from django.dispatch import receiver
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from bipsync_partner.connections import breaker
from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.signals import connection_needs_reconnect
from bipsync_partner.connections.visibility import visible_connections

log = logging.getLogger(__name__)


class ReconnectNotice(models.Model):
    """That the team's admins were told a connection needs reconnecting (open until cleared)."""

    connection = models.ForeignKey(
        "connections.Connection", models.CASCADE, related_name="reconnect_notices"
    )
    reason = models.TextField(blank=True)
    emailed_to = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(default=timezone.now)
    cleared_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["connection"],
                condition=models.Q(cleared_at__isnull=True),
                name="one_open_reconnect_notice_per_connection",
            )
        ]

    def __str__(self) -> str:
        state = "cleared" if self.cleared_at else "open"
        return f"reconnect notice for {self.connection_id} ({state})"


def connection_url(connection: Connection) -> str:
    path = reverse("connections:detail", args=[connection.team.slug, connection.pk])
    return f"{settings.SITE_URL}{path}"


def _email_admins(connection: Connection, reason: str) -> int:
    recipients = list(connection.team.admins().values_list("email", flat=True))
    if not recipients:
        return 0
    subject = f"Bipsync connection to {connection.tenant} needs reconnecting"
    owner = f" ({connection.user})" if connection.user_id is not None else ""
    body = (
        f"The {connection.get_kind_display().lower()} connection{owner} of {connection.team} to "
        f"the Bipsync site {connection.tenant} stopped working.\n\n"
        f"Why: {reason or connection.status_sentence}\n\n"
        f"Reconnect it here: {connection_url(connection)}\n"
    )
    send_mail(subject, body, None, recipients)
    return len(recipients)


@receiver(connection_needs_reconnect, dispatch_uid="connections.notify_needs_reconnect")
def notify_needs_reconnect(
    sender: Any, connection: Connection, reason: str = "", **kwargs: Any
) -> None:
    """Open a notice and email the team's admins, once per time the connection breaks."""
    try:
        with transaction.atomic():
            notice = ReconnectNotice.objects.create(connection_id=connection.pk, reason=reason)
    except IntegrityError:
        return  # already notified and not yet reconnected
    fresh = Connection.objects.select_related("team", "user").get(pk=connection.pk)
    try:
        sent = _email_admins(fresh, reason)
    except Exception:
        # The token service's caller must not fail because a mail server is down; the banner
        # still shows, and the log says what happened.
        log.exception("Could not email the admins about %r", fresh)
        return
    ReconnectNotice.objects.filter(pk=notice.pk).update(emailed_to=sent)


def clear_notices(connection: Connection) -> None:
    """The connection works again: close its open notice."""
    ReconnectNotice.objects.filter(connection=connection, cleared_at__isnull=True).update(
        cleared_at=timezone.now()
    )


def banner(request: HttpRequest) -> dict[str, Any]:
    """Context processor: the current team's connections that need reconnecting, and the
    Bipsync sites of its connections whose circuit breaker is open."""
    user = getattr(request, "user", None)
    if not isinstance(user, User):
        return {}
    team = getattr(request, "team", None)
    if team is None:
        from accounts.teams import current_team

        team = current_team(request)
    if team is None:
        return {}
    membership = getattr(request, "membership", None) or user.membership_in(team)
    if membership is None:
        return {}
    visible = visible_connections(team, user, membership)
    broken = list(visible.filter(status=Connection.Status.NEEDS_RECONNECT))
    live = visible.exclude(status=Connection.Status.DISCONNECTED).order_by()
    return {
        "tenant_outages": breaker.outages(live.values_list("tenant", flat=True).distinct()),
        "reconnect_banner": {
            "team": team,
            "connections": broken,
            "can_manage": membership.is_admin,
        }
        if broken
        else None,
    }
