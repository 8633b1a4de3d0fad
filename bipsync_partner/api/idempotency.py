"""``Idempotency-Key`` for the API's writes: a retried request returns the write the first one
made instead of making a second.

The key is kept per team with the SHA-256 of the operation and its body (canonical JSON): the
same key with the same request answers with the same write (200); with another request it is a
422 problem, as the IETF's draft "The Idempotency-Key HTTP Header Field" advises. The key's row
is inserted in the transaction that makes the write, so two requests racing with one key make
one write: the second waits on the unique index, fails, and answers with the first's write.

Keys are kept ``API_IDEMPOTENCY_KEY_HOURS`` (24 by default, the retention the draft leaves to the
server and says to publish; Stripe's is the same): beat's hourly ``api.prune_idempotency_keys``
removes older ones, so a client retrying a day later makes a new write.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from accounts.models import Team
from bipsync_partner.api.models import IdempotencyKey
from bipsync_partner.api.problems import Problem
from bipsync_partner.writes.models import Write

HEADER = "Idempotency-Key"


def request_hash(operation: str, body: dict[str, Any]) -> str:
    canonical = json.dumps([operation, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replayed(found: IdempotencyKey, digest: str) -> Write:
    if found.request_hash != digest:
        raise Problem(
            422,
            f"This {HEADER} was used for a different request; use a new key for a new write.",
            kind="idempotency-key-reused",
        )
    return found.write


def once(team: Team, key: str, digest: str, make: Callable[[], Write]) -> tuple[bool, Write]:
    """(True, the new write) the first time; (False, the earlier write) for a repeat."""
    found = IdempotencyKey.objects.filter(team=team, key=key).select_related("write").first()
    if found is not None:
        return False, _replayed(found, digest)
    try:
        with transaction.atomic():
            write = make()
            IdempotencyKey.objects.create(team=team, key=key, request_hash=digest, write=write)
    except IntegrityError:
        found = IdempotencyKey.objects.filter(team=team, key=key).select_related("write").first()
        if found is None:
            raise
        return False, _replayed(found, digest)
    return True, write


def prune(now: datetime) -> int:
    """Remove the keys older than ``API_IDEMPOTENCY_KEY_HOURS``; how many. One statement: an
    hourly run removes about an hour's keys, and a DELETE locks only the rows it removes."""
    cutoff = now - timedelta(hours=settings.API_IDEMPOTENCY_KEY_HOURS)
    removed, _ = IdempotencyKey.objects.filter(created__lt=cutoff).delete()
    return removed
