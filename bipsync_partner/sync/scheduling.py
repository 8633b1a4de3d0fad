"""When runs are created and queued: "Sync now", the minute-ly due sweep, and resuming orphans.

Every path ends in :func:`enqueue`, which claims a Redis marker per run before publishing (so
a sweep and a button, or two sweeps, queue a run once) and publishes through
``transaction.on_commit`` (so a worker never looks for a run that is not committed yet). The
marker is released by the task once it holds the connection's lock; a run that is unfinished,
has no marker and whose lock is free has lost its worker (killed, restarted) and is queued again
by the next sweep, to continue from its checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from bipsync_partner.connections.models import Connection
from bipsync_partner.coordination import OnceKeys
from bipsync_partner.sync import engine
from bipsync_partner.sync.models import SyncRun, SyncSchedule, syncable_connections

log = logging.getLogger(__name__)

Publish = Callable[[int, float], None]

#: Runs looked at per sweep; the rest wait a minute (keeps a sweep short after an outage).
SWEEP_LIMIT = 500


def markers() -> OnceKeys:
    return OnceKeys("sync", ttl_seconds=settings.SYNC_REQUEUE_AFTER_SECONDS)


def _publisher() -> Publish:
    from bipsync_partner.sync.tasks import run_sync_task

    def publish(run_id: int, countdown: float) -> None:
        # countdown=0.0 would still make an ETA task; only a real delay is passed.
        if countdown > 0:
            run_sync_task.apply_async((run_id,), countdown=countdown)
        else:
            run_sync_task.apply_async((run_id,))

    return publish


def enqueue(run_id: int, countdown: float = 0.0, *, publish: Publish | None = None) -> bool:
    """Queue the run's task once (after commit); False if it is queued already."""
    # The marker outlives the countdown: a run waiting out a Retry-After is still "queued".
    keys = OnceKeys("sync", ttl_seconds=int(countdown) + settings.SYNC_REQUEUE_AFTER_SECONDS)
    name = keys.name(run_id)
    if not keys.claim(name):
        return False
    send = publish or _publisher()

    def go() -> None:
        try:
            send(run_id, countdown)
        except Exception:
            keys.release([name])
            raise

    transaction.on_commit(go)
    return True


def release_marker(run_id: int) -> None:
    markers().release([markers().name(run_id)])


def schedule_for(conn: Connection) -> SyncSchedule:
    schedule, _ = SyncSchedule.objects.get_or_create(connection=conn)
    return schedule


@dataclass(frozen=True)
class Requested:
    run: SyncRun
    created: bool


def request_sync(
    conn: Connection,
    *,
    trigger: str = SyncRun.Trigger.MANUAL,
    user: User | None = None,
    publish: Publish | None = None,
) -> Requested:
    """Create and queue a run, or return the connection's unfinished one."""
    schedule_for(conn)
    try:
        with transaction.atomic():
            run = SyncRun.objects.create(connection=conn, trigger=trigger, requested_by=user)
            enqueue(run.pk, publish=publish)
            return Requested(run, True)
    except IntegrityError:
        # The partial unique constraint: this connection already has a queued or running run.
        existing = SyncRun.objects.filter(connection=conn, status__in=SyncRun.UNFINISHED).first()
        if existing is None:
            raise
        return Requested(existing, False)


@dataclass(frozen=True)
class SyncSweep:
    schedules_created: int
    runs_created: int
    resumed: int


def sweep_due(*, now: datetime | None = None, publish: Publish | None = None) -> SyncSweep:
    """Create runs for due schedules and re-queue unfinished runs that lost their worker."""
    now = now or timezone.now()
    syncable = syncable_connections()

    # Every connection that may sync has a schedule, due at once when new.
    missing = list(syncable.filter(sync_schedule__isnull=True).values_list("id", flat=True))
    SyncSchedule.objects.bulk_create(
        [SyncSchedule(connection_id=cid, next_due_at=now) for cid in missing],
        ignore_conflicts=True,
    )

    busy = SyncRun.objects.filter(status__in=SyncRun.UNFINISHED).values("connection_id")
    due = list(
        SyncSchedule.objects.filter(enabled=True, next_due_at__lte=now, connection__in=syncable)
        .exclude(connection_id__in=busy)
        .select_related("connection")
        .order_by("next_due_at")[:SWEEP_LIMIT]
    )
    created = 0
    for schedule in due:
        try:
            with transaction.atomic():
                run = SyncRun.objects.create(
                    connection=schedule.connection, trigger=SyncRun.Trigger.SCHEDULE
                )
                # Not due again while this run works; finish/fail set the real next time.
                SyncSchedule.objects.filter(pk=schedule.pk).update(
                    next_due_at=now + schedule.interval
                )
                enqueue(run.pk, publish=publish)
                created += 1
        except IntegrityError:
            continue  # a button or another sweep created a run in between

    resumed = 0
    unfinished = SyncRun.objects.filter(status__in=SyncRun.UNFINISHED).values_list(
        "id", "connection_id"
    )[:SWEEP_LIMIT]
    m = markers()
    for run_id, connection_id in unfinished:
        if m.held(m.name(run_id)) or not engine.lock_is_free(connection_id):
            continue
        if enqueue(run_id, publish=publish):
            resumed += 1
            log.info("Sync run %s lost its worker; queued to continue from its checkpoint", run_id)
    return SyncSweep(len(missing), created, resumed)
