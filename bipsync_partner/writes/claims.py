"""Claiming a write for one worker, with a lease, and every later change fenced on the claim.

``claim`` runs ``SELECT ... FOR UPDATE SKIP LOCKED`` on the row: two workers handed the same
write at once never both get it (the second sees nothing to claim). The claim is a token and a
lease written in the same short transaction, so no row lock is held during the HTTP requests; a
worker killed mid-delivery leaves the write "sending" until its lease runs out, and the next
claimant then knows an attempt may have reached Bipsync (``uncertain``) and looks it up first.

Each change after the claim (progress, the outcome) updates the row only ``WHERE claim_token =
<mine>``: a worker whose lease ran out while it was stalled cannot overwrite the work of the one
that took over.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bipsync_partner.writes.models import Write


@dataclass(frozen=True)
class Claim:
    write: Write
    token: uuid.UUID
    #: Whether an earlier attempt may have reached Bipsync without us learning its outcome.
    uncertain: bool

    def update(self, **fields: Any) -> bool:
        """Change the claimed row; False when the claim was lost (another worker has it)."""
        fields.setdefault("updated", timezone.now())
        return Write.objects.filter(pk=self.write.pk, claim_token=self.token).update(**fields) == 1

    def renew(self) -> bool:
        return self.update(lease_until=lease_end())


def lease_end() -> Any:
    return timezone.now() + timedelta(seconds=settings.WRITES_LEASE_SECONDS)


class NotClaimed(Exception):
    """Why a write could not be claimed now: ``reason`` is a short word for logs and tests."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _earlier_pending(write: Write) -> bool:
    return Write.objects.filter(
        team_id=write.team_id,
        ordering_key=write.ordering_key,
        id__lt=write.id,
        status__in=Write.PENDING,
    ).exists()


def claim(write_id: int) -> Claim:
    """Take the write for this worker, or raise :class:`NotClaimed` saying why not."""
    now = timezone.now()
    with transaction.atomic():
        write = Write.objects.select_for_update(skip_locked=True).filter(pk=write_id).first()
        if write is None:
            raise NotClaimed("locked or gone")
        if write.is_final:
            raise NotClaimed("final")
        if write.status == Write.Status.SENDING and (
            write.lease_until is not None and write.lease_until > now
        ):
            raise NotClaimed("leased")
        if write.next_attempt_at > now:
            raise NotClaimed("not due")
        # Order per external id: an earlier write of the same key goes first; its end queues
        # this one (queueing.after_final).
        if _earlier_pending(write):
            raise NotClaimed("waiting for an earlier write")
        # A killed worker's attempt ("sending" with a lapsed lease) may have reached Bipsync.
        uncertain = write.uncertain or write.status == Write.Status.SENDING
        token = uuid.uuid4()
        write.status = Write.Status.SENDING
        write.claim_token = token
        write.lease_until = lease_end()
        write.attempts += 1
        write.last_attempt_at = now
        # Until this attempt's outcome is known, the next one must look first.
        write.uncertain = True
        write.save(
            update_fields=[
                "status",
                "claim_token",
                "lease_until",
                "attempts",
                "last_attempt_at",
                "uncertain",
                "updated",
            ]
        )
    return Claim(write=write, token=token, uncertain=uncertain)
