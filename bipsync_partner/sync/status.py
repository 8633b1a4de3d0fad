"""The one sentence that says whether and when a connection syncs.

Every page that talks about a connection's syncing (the connections list, the sync overview, a
connection's sync history, the answer to "Sync now") asks :func:`sync_sentence`, so two texts on
one page can never contradict each other. Schedules are spoken of in minutes, the unit the
schedule form takes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.utils import timezone

from bipsync_partner.connections.models import Connection
from bipsync_partner.sync.models import SyncSchedule


def minutes_text(seconds: int) -> str:
    minutes = max(1, round(seconds / 60))
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def _when(moment: datetime, now: datetime) -> str:
    if moment <= now:
        return "due now (within a minute)"
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def sync_sentence(
    connection: Connection,
    schedule: SyncSchedule | None,
    *,
    syncs: bool,
    now: datetime | None = None,
) -> str:
    """Whether ``connection`` syncs and when next; ``syncs`` is :func:`~.models.may_sync`."""
    now = now or timezone.now()
    status = connection.status
    if status == Connection.Status.DISCONNECTED:
        return "Disconnected: it no longer syncs. Its sync history is kept."
    if status == Connection.Status.NEEDS_RECONNECT:
        return "Does not sync until it is reconnected."
    if not syncs:
        if connection.kind_spec.personal:
            return (
                "Does not sync: members' own connections are not enabled for syncing in this team."
            )
        return "Does not sync while it is not working."
    if schedule is None:
        every = minutes_text(settings.SYNC_DEFAULT_INTERVAL_SECONDS)
        return f"Syncs for the first time within a minute, then every {every}."
    if not schedule.enabled:
        return "The schedule is off: it syncs only when an admin clicks Sync now."
    return (
        f"Syncs every {minutes_text(schedule.interval_seconds)}; next "
        f"{_when(schedule.next_due_at, now)}."
    )
