"""Queueing deliveries: after a commit, after a write ends, and from beat's sweep.

What is queued is a run of the team's deliverer (:func:`delivery.deliver_due`), only a nudge:
the rows say what to do. A run queued while another waits for a worker would find nothing the
waiting one does not, so at most one waits per team (a Redis marker, set when it is queued and
cleared when it starts; it expires by itself should the run be lost). Queueing one too many
costs a claim that finds nothing, and losing one costs at most a sweep interval: the sweep
queues a run for every team with a due write that is first of its ordering key (a retry, or a
write whose worker's lease ran out).

Writes of one ordering key are delivered in id order, and :func:`serialise_key` makes id order
commit order: two transactions that queue a write of the same key take turns, so a write whose
id is smaller can never commit after (and so be delivered after) one queued after it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from bipsync_partner.commit_hooks import on_commit_once
from bipsync_partner.connections.models import Connection
from bipsync_partner.coordination import OnceKeys
from bipsync_partner.writes.models import Write

#: The namespace of the writes' advisory locks (the high 32 bits of the key), so that they
#: cannot collide with other advisory locks of the database.
_LOCK_NAMESPACE = zlib.crc32(b"bipsync_partner.writes.ordering_key")


def serialise_key(team_id: int, ordering_key: str) -> None:
    """Hold the ordering key's transaction-scoped advisory lock until the current transaction
    ends: a second transaction queueing a write of the same key waits here for the first to
    commit, so it takes its id (and commits) after it. Call it inside the transaction, before
    the write's row is inserted."""
    key = (_LOCK_NAMESPACE << 32 | zlib.crc32(f"{team_id}:{ordering_key}".encode())) - (1 << 63)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _waiting() -> OnceKeys:
    # Longer than a sweep interval would delay a lost run's replacement beyond it.
    return OnceKeys("writes-run", ttl_seconds=settings.WRITES_SWEEP_INTERVAL_SECONDS)


def enqueue(team_id: int, *, countdown: float = 0.0) -> None:
    """Queue a run of the team's deliverer once the current transaction commits (at once
    outside one). A run queued for later (a retry's backoff) is always queued; one for now only
    when no other waits."""

    def send() -> None:
        if countdown > 0 or _waiting().claim(_waiting().name(team_id)):
            _publish(team_id, countdown)

    if countdown > 0:
        transaction.on_commit(send)
    else:
        # The transaction's other writes for it share this nudge (one Redis round trip).
        on_commit_once(("writes-run", str(team_id)), send)


def _publish(team_id: int, countdown: float = 0.0) -> None:
    from bipsync_partner.writes.tasks import deliver_writes_task  # the task calls this module

    if countdown > 0:
        deliver_writes_task.apply_async((team_id,), countdown=countdown)
    else:
        deliver_writes_task.apply_async((team_id,))


def started(team_id: int) -> None:
    """A run of the team's deliverer started: the next write queued must queue another."""
    _waiting().release([_waiting().name(team_id)])


def after_final(write: Write) -> None:
    """A write ended: the next one of its ordering key may go (an attachment after its note)."""
    successor = Write.objects.filter(
        team_id=write.team_id,
        ordering_key=write.ordering_key,
        id__gt=write.id,
        status__in=Write.PENDING,
    ).exists()
    if successor:
        enqueue(write.team_id)


def resume_through(connection: Connection) -> int:
    """Make the writes waiting for ``connection`` (queued, their next attempt still to come) due
    now, and queue a run for them; how many. A write that names no connection goes through the
    team's service account, so those wait for it too. Any retry's wait ends here, a 429's
    included: the tenant's gate holds the run back for as long as Bipsync asked."""
    now = timezone.now()
    through = Q(connection_id=connection.pk)
    if connection.kind == Connection.Kind.SERVICE_ACCOUNT:
        through |= Q(connection_id__isnull=True)
    resumed = (
        Write.objects.filter(team_id=connection.team_id, status=Write.Status.QUEUED)
        .filter(through, next_attempt_at__gt=now)
        .update(next_attempt_at=now)
    )
    if resumed:
        enqueue(connection.team_id)
    return resumed


@dataclass(frozen=True)
class SweepResult:
    #: Teams whose deliverer was queued.
    queued: int
    expired_leases: int


def _markers() -> OnceKeys:
    # A team queued by one sweep is not queued again by the next while its run waits.
    return OnceKeys("writes-sweep", ttl_seconds=max(5, settings.WRITES_LEASE_SECONDS // 4))


def sweep() -> SweepResult:
    """Queue a run for each team with a due write that leads its ordering key (retries, lost
    queueing, dead workers)."""
    now = timezone.now()
    # The first pending write of each key (later ones wait for it anyway), when it is due: a
    # queued one whose next attempt has come, or one whose worker's lease ran out.
    heads = (
        Write.objects.filter(status__in=Write.PENDING)
        .order_by("team_id", "ordering_key", "id")
        .distinct("team_id", "ordering_key")
        .values("id")
    )
    due = list(
        Write.objects.filter(id__in=heads, next_attempt_at__lte=now)
        .filter(Q(status=Write.Status.QUEUED) | Q(lease_until__lte=now))
        .order_by("next_attempt_at")
        .values("team_id", "status")[: settings.WRITES_SWEEP_BATCH]
    )
    teams = list(dict.fromkeys(row["team_id"] for row in due))
    markers = _markers()
    claimed = markers.claim_many([markers.name(team_id) for team_id in teams])
    queued = 0
    for team_id, mine in zip(teams, claimed, strict=True):
        if mine:
            # Even while a run waits: that one may be lost.
            _publish(team_id)
            queued += 1
    expired = sum(1 for row in due if row["status"] == Write.Status.SENDING)
    return SweepResult(queued=queued, expired_leases=expired)
