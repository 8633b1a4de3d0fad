"""The sync's answers to the connections app's signals (:mod:`bipsync_partner.connections.signals`):
a catch-up sync after a reconnect, the research a disconnect takes away, and each connection's
last sync for the connections list. Connected in :meth:`SyncConfig.ready`."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from django.dispatch import receiver
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.signals import (
    SyncSummary,
    connection_reconnected,
    disconnect_consequences,
    sync_summaries,
)
from bipsync_partner.sync import scheduling
from bipsync_partner.sync.exposure import documents_only_visible_through
from bipsync_partner.sync.models import SyncRun, SyncSchedule, may_sync, syncable_connections
from bipsync_partner.sync.status import sync_sentence

log = logging.getLogger(__name__)

CATCH_UP_NOTE = "Catch-up sync after the reconnect."


@receiver(connection_reconnected, dispatch_uid="sync.catch_up_after_reconnect")
def catch_up_after_reconnect(
    sender: Any, connection: Connection, actor: User | None = None, **kwargs: Any
) -> None:
    """Whatever the schedule says, read what was missed while the connection did not work, now
    (the run is queued after its commit, :func:`scheduling.enqueue`)."""
    connection.refresh_from_db(fields=["status"])
    if not may_sync(connection):
        return
    requested = scheduling.request_sync(connection, trigger=SyncRun.Trigger.MANUAL, user=actor)
    if requested.created:
        requested.run.add_note(CATCH_UP_NOTE)
        requested.run.save(update_fields=["notes"])
    log.info("Catch-up sync of %r after its reconnect: run %s", connection, requested.run.pk)


@receiver(disconnect_consequences, dispatch_uid="sync.research_that_disappears")
def research_that_disappears(sender: Any, connection: Connection, **kwargs: Any) -> list[str]:
    documents = documents_only_visible_through(connection)
    sentences = []
    if documents:
        noun = "research document" if documents == 1 else "research documents"
        sentences.append(
            f"{documents:,} {noun} synced only through this connection disappear from the "
            "research browser (they are kept, and come back if it is connected again)."
        )
    else:
        sentences.append("No research synced through this connection is shown now.")
    if may_sync(connection):
        sentences.append("Its scheduled syncs stop; its sync history stays readable.")
    return sentences


@receiver(sync_summaries, dispatch_uid="sync.summaries_for_the_connections_list")
def summaries(sender: Any, connections: list[Connection], **kwargs: Any) -> dict[UUID, SyncSummary]:
    ids = [c.pk for c in connections]
    if not ids:
        return {}
    now = timezone.now()
    schedules = {s.connection_id: s for s in SyncSchedule.objects.filter(connection_id__in=ids)}
    last_runs = {
        run.connection_id: run
        for run in SyncRun.objects.filter(connection_id__in=ids, finished_at__isnull=False)
        .order_by("connection_id", "-finished_at")
        .distinct("connection_id")
        .only("connection_id", "finished_at", "status")
    }
    team_ids = {c.team_id for c in connections}
    syncing = set(
        syncable_connections().filter(team_id__in=team_ids, pk__in=ids).values_list("pk", flat=True)
    )
    return {
        c.pk: SyncSummary(
            last_sync_at=last_runs[c.pk].finished_at if c.pk in last_runs else None,
            last_sync_outcome=last_runs[c.pk].get_status_display() if c.pk in last_runs else "",
            sentence=sync_sentence(c, schedules.get(c.pk), syncs=c.pk in syncing, now=now),
            history_url=reverse(
                "sync:history", kwargs={"team_slug": c.team.slug, "connection_id": c.pk}
            ),
        )
        for c in connections
    }
