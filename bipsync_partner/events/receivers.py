"""What becomes an event, hooked where the change is recorded, so that the event is written in
the change's own transaction:

- ``connection.connected`` / ``connection.recovered`` / ``connection.disconnected``: the
  connection's history line (``ConnectionEvent``) of the connect, reconnect or disconnect, saved
  in the transaction that changes the connection. (The connections app's
  ``connection_reconnected`` and ``connection_disconnected`` signals come after the commit, too
  late for an outbox.)
- ``connection.needs_reconnect``: the connections app's ``history_appended`` signal, sent by
  the token service inside the transaction that stores the dead grant, under the savepoint of
  its history line (the token service writes by hand, so there is no ``post_save``; a failure
  here loses the line and the event, never the tokens).
- ``sync.completed``: the sync's ``sync_completed`` signal, in the run's final transaction.
- ``write.delivered`` / ``write.failed``: the writes' signals, in the outcome's transaction.
"""

from __future__ import annotations

import functools
from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from bipsync_partner.connections.models import Connection, ConnectionEvent
from bipsync_partner.connections.signals import history_appended
from bipsync_partner.events.outbox import record, record_each
from bipsync_partner.sync.models import SyncRun
from bipsync_partner.sync.signals import sync_completed
from bipsync_partner.writes.models import Write
from bipsync_partner.writes.signals import write_delivered, write_failed

_HISTORY_EVENTS = {
    ConnectionEvent.Kind.CONNECTED: "connection.connected",
    ConnectionEvent.Kind.RECONNECTED: "connection.recovered",
    ConnectionEvent.Kind.DISCONNECTED: "connection.disconnected",
}


def connection_data(connection: Connection) -> dict[str, Any]:
    return {
        "connection": {
            "id": str(connection.pk),
            "kind": connection.kind,
            "tenant": connection.tenant,
            "label": connection.label,
            "status": connection.status,
        }
    }


@receiver(post_save, sender=ConnectionEvent, dispatch_uid="events.connection_history")
def connection_history_event(
    sender: type[ConnectionEvent], instance: ConnectionEvent, created: bool, **kwargs: Any
) -> None:
    type = _HISTORY_EVENTS.get(ConnectionEvent.Kind(instance.kind)) if created else None
    if type is None:
        return
    connection = instance.connection
    record(connection.team_id, type, connection_data(connection))


@receiver(history_appended, dispatch_uid="events.connection_needs_reconnect")
def connection_needs_reconnect_event(
    sender: type[Connection], connection: Connection, kind: str, message: str, **kwargs: Any
) -> None:
    if kind != ConnectionEvent.Kind.NEEDS_RECONNECT:
        return
    data = connection_data(connection)
    data["reason"] = message
    record(connection.team_id, "connection.needs_reconnect", data)


@receiver(sync_completed, dispatch_uid="events.sync_completed")
def sync_completed_event(sender: type[SyncRun], run: SyncRun, **kwargs: Any) -> None:
    from bipsync_partner.feed.reading import current_cursor

    connection = run.connection
    record(
        connection.team_id,
        "sync.completed",
        {
            "run": {
                "id": run.pk,
                "connection": str(connection.pk),
                "tenant": connection.tenant,
                "trigger": run.trigger,
                "started_at": run.started_at.isoformat() if run.started_at else None,
                "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                "seen": run.seen_count,
                "created": run.created_count,
                "updated": run.updated_count,
                "unchanged": run.unchanged_count,
                "deleted": run.deleted_count,
            },
            # Where a reader of the change feed continues to get what this run changed.
            "feed_cursor": current_cursor(connection.team_id),
        },
    )


def write_data(writes: list[Write]) -> list[dict[str, Any]]:
    # The outcomes were written by an UPDATE of the claimed rows: read them back (same
    # transaction), in one query for the group.
    stored = Write.objects.in_bulk([write.pk for write in writes])
    return [
        {
            "write": {
                "id": str(write.uid),
                "kind": write.kind,
                "external_id": {"source": write.external_source, "value": write.external_value},
                "bipsync_id": write.bipsync_id or None,
                "connection": str(write.connection_id) if write.connection_id else None,
                "error_code": write.error_code or None,
                "error": write.error or None,
            }
        }
        for write in (stored[one.pk] for one in writes)
    ]


def _record_writes(type: str, writes: list[Write]) -> None:
    for team_id in {write.team_id for write in writes}:
        mine = [write for write in writes if write.team_id == team_id]
        record_each(team_id, type, functools.partial(write_data, mine))


@receiver(write_delivered, dispatch_uid="events.write_delivered")
def write_delivered_event(sender: type[Write], writes: list[Write], **kwargs: Any) -> None:
    _record_writes("write.delivered", writes)


@receiver(write_failed, dispatch_uid="events.write_failed")
def write_failed_event(sender: type[Write], writes: list[Write], **kwargs: Any) -> None:
    _record_writes("write.failed", writes)
