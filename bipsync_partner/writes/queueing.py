"""Queueing deliveries: after a commit, after a write ends, and from beat's sweep.

A delivery task is only a nudge; the row says what to do. Queueing one twice costs a claim that
finds nothing to do, and losing one costs at most a sweep interval: the sweep queues every due
write that is first of its ordering key, and every write whose worker's lease ran out.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bipsync_partner.coordination import OnceKeys
from bipsync_partner.writes.models import Write


def enqueue(write_id: int, *, countdown: float = 0.0) -> None:
    """Queue the delivery once the current transaction commits (at once outside one)."""
    from bipsync_partner.writes.tasks import deliver_write_task

    def send() -> None:
        if countdown > 0:
            deliver_write_task.apply_async((write_id,), countdown=countdown)
        else:
            deliver_write_task.apply_async((write_id,))

    transaction.on_commit(send)


def after_final(write: Write) -> None:
    """A write ended: the next one of its ordering key may go (an attachment after its note)."""
    successor = (
        Write.objects.filter(
            team_id=write.team_id,
            ordering_key=write.ordering_key,
            id__gt=write.id,
            status__in=Write.PENDING,
        )
        .order_by("id")
        .values_list("id", flat=True)
        .first()
    )
    if successor is not None:
        enqueue(successor)


@dataclass(frozen=True)
class SweepResult:
    queued: int
    expired_leases: int


def _markers() -> OnceKeys:
    # A write queued by one sweep is not queued again by the next while its task waits.
    return OnceKeys("writes-sweep", ttl_seconds=max(5, settings.WRITES_LEASE_SECONDS // 4))


def sweep() -> SweepResult:
    """Queue the due writes that lead their ordering key (retries, lost queueing, dead workers)."""
    now = timezone.now()
    # The first pending write of each key: later ones wait for it anyway.
    heads = (
        Write.objects.filter(status__in=Write.PENDING)
        .order_by("team_id", "ordering_key", "id")
        .distinct("team_id", "ordering_key")
        .values("id", "status", "next_attempt_at", "lease_until")
    )
    due = [
        row
        for row in heads[: settings.WRITES_SWEEP_BATCH]
        if row["next_attempt_at"] <= now
        and (row["status"] == Write.Status.QUEUED or (row["lease_until"] or now) <= now)
    ]
    markers = _markers()
    claimed = markers.claim_many([markers.name(row["id"]) for row in due])
    queued = 0
    for row, mine in zip(due, claimed, strict=True):
        if mine:
            enqueue(row["id"])
            queued += 1
    expired = sum(1 for row in due if row["status"] == Write.Status.SENDING)
    return SweepResult(queued=queued, expired_leases=expired)
