"""What a team admin may do to a write from the Deliveries page: retry it or cancel it.

Both are one conditional ``UPDATE`` each, so that they never race the deliverer: a write a
worker holds (``sending``) is neither retried nor cancelled, since its request may be at
Bipsync already; the worker's own outcome decides it.

- **Retry** a failed or cancelled write: queued again, due now, with a fresh count of attempts.
  ``uncertain`` is kept, so that a write whose last attempt may have reached Bipsync is looked
  up by its external id before anything is sent again (no duplicate note).
- **Cancel** a queued or failed write, and the attachments still waiting for it (they cannot be
  delivered without their note).
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from bipsync_partner.writes import queueing
from bipsync_partner.writes.models import Write

RETRYABLE = (Write.Status.FAILED, Write.Status.CANCELLED)


class NotAllowed(Exception):
    """The write is not in a state that allows this; the message is a sentence for people."""


def retry(write: Write) -> None:
    changed = Write.objects.filter(pk=write.pk, status__in=RETRYABLE).update(
        status=Write.Status.QUEUED,
        next_attempt_at=timezone.now(),
        attempts=0,
        error="",
        error_code="",
        finished_at=None,
        claim_token=None,
        lease_until=None,
        updated=timezone.now(),
    )
    if not changed:
        raise NotAllowed("Only a failed or cancelled write can be retried; this one is not.")
    queueing.enqueue(write.team_id)  # else beat's sweep finds it due


def cancel(write: Write) -> int:
    """Cancel ``write`` and its waiting dependents; return how many writes were cancelled."""
    with transaction.atomic():
        not_held = Q(status=Write.Status.FAILED) | Q(
            status=Write.Status.QUEUED, claim_token__isnull=True
        )
        changed = Write.objects.filter(not_held, pk=write.pk).update(
            status=Write.Status.CANCELLED, finished_at=timezone.now(), updated=timezone.now()
        )
        if not changed:
            raise NotAllowed(
                "Only a queued or failed write that no worker is sending can be cancelled."
            )
        dependents = Write.objects.filter(
            depends_on=write, status=Write.Status.QUEUED, claim_token__isnull=True
        ).update(status=Write.Status.CANCELLED, finished_at=timezone.now(), updated=timezone.now())
    return 1 + dependents
