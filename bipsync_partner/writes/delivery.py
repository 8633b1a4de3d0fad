"""Delivering one write: claim it, choose its connection, send it, record the outcome.

The outcome is one of:

- delivered: the Bipsync id is kept, and the next write of the same ordering key is queued;
- retried later: Bipsync was unavailable, rate-limited us, or may have acted without telling us
  (the write stays ``uncertain``, so the next attempt looks it up first); backoff with jitter,
  the Retry-After of a 429 when longer, up to ``WRITES_MAX_ATTEMPTS``;
- failed: a reason that trying again cannot fix (a validation error, with Bipsync's own words;
  403, the server's address not allow-listed; a connection that cannot write).
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bipsync_partner.connections.models import Connection
from bipsync_partner.ops import metrics
from bipsync_partner.sync.api import (
    ApiError,
    BipsyncApi,
    InsufficientScope,
    NotAuthorized,
    TokenUnavailable,
)
from bipsync_partner.sync.client import api_for
from bipsync_partner.writes import files, queueing, senders
from bipsync_partner.writes.claims import Claim, NotClaimed, claim
from bipsync_partner.writes.connections import WriteRefusal, writing_connection
from bipsync_partner.writes.models import Write
from bipsync_partner.writes.signals import write_delivered, write_failed

log = logging.getLogger(__name__)

SENDERS = {
    Write.Kind.NOTE: senders.send_note,
    Write.Kind.ATTACHMENT: senders.send_attachment,
    Write.Kind.UPSERT: senders.send_upsert,
}


class Terminal(Exception):
    """A reason trying again cannot fix."""

    def __init__(self, code: str, sentence: str) -> None:
        super().__init__(sentence)
        self.code = code
        self.sentence = sentence


def deliver(write_id: int) -> str:
    """Deliver the write if it is this worker's to deliver now; a word saying what happened."""
    try:
        held = claim(write_id)
    except NotClaimed as not_claimed:
        return not_claimed.reason
    outcome = _attempt(held)
    metrics.inc("bipsync_writes", kind=held.write.kind, outcome=outcome)
    return outcome


def _attempt(held: Claim) -> str:
    try:
        bipsync_id = _send(held)
    except Terminal as terminal:
        return _fail(held, terminal.code, terminal.sentence)
    except ApiError as error:
        # A grant that must be reconnected (or refused even after a refresh) is a person's
        # job, not the write's fault: the write waits for it, up to its attempts.
        if error.transient or (
            isinstance(error, TokenUnavailable | NotAuthorized)
            and not isinstance(error, InsufficientScope)
        ):
            return _retry(held, error.code, error.sentence, error.retry_after)
        return _fail(held, error.code, error.sentence)
    except files.FileProblem as problem:
        return _fail(held, "file_problem", str(problem))
    except Exception as exc:
        log.exception("Write %s failed unexpectedly", held.write.uid)
        return _retry(
            held, "unexpected", f"The app hit an unexpected error ({type(exc).__name__})."
        )
    return _deliver(held, bipsync_id)


def _send(held: Claim) -> str:
    write = held.write
    if write.depends_on_id is not None:
        _take_parent(held, write.depends_on_id)
    try:
        connection = writing_connection(write)
    except WriteRefusal as refusal:
        if not refusal.final:
            raise ApiError(refusal.sentence, code=refusal.code, transient=True) from None
        raise Terminal(refusal.code, refusal.sentence) from None
    if write.connection_id != connection.pk:
        held.update(connection=connection)
    author = _author(write, connection)
    api: BipsyncApi = api_for(connection)
    with api:
        return SENDERS[Write.Kind(write.kind)](api, held, author)


def _take_parent(held: Claim, parent_id: int) -> None:
    parent = Write.objects.filter(id=parent_id).first()
    if parent is None:
        raise Terminal("parent_failed", "Its note's write no longer exists.")
    if parent.status != Write.Status.DELIVERED or not parent.bipsync_id:
        raise Terminal("parent_failed", "Its note could not be delivered, so neither can it.")
    held.write.parent_bipsync_id = parent.bipsync_id
    held.update(parent_bipsync_id=parent.bipsync_id)


def _author(write: Write, connection: Connection) -> str:
    if write.kind == Write.Kind.UPSERT:
        return ""  # an upsert names no user [doc]
    author = write.payload.get("author") or (
        connection.subject_id if connection.kind_spec.personal else ""
    )
    if not author:
        raise Terminal(
            "no_author",
            "Bipsync needs the user a note is attributed to: give the write an author (a "
            "Bipsync user id) or write through a member's own connection.",
        )
    return str(author)


def backoff(attempts: int) -> float:
    base = settings.WRITES_BACKOFF_BASE_MS / 1000.0
    cap = settings.WRITES_BACKOFF_CAP_MS / 1000.0
    ceiling = min(cap, base * (2 ** max(0, attempts - 1)))
    return random.uniform(ceiling / 2, ceiling)


def _deliver(held: Claim, bipsync_id: str) -> str:
    now = timezone.now()
    with transaction.atomic():
        if not held.update(
            status=Write.Status.DELIVERED,
            bipsync_id=bipsync_id,
            uncertain=False,
            claim_token=None,
            lease_until=None,
            error="",
            error_code="",
            finished_at=now,
        ):
            return "claim lost"
        queueing.after_final(held.write)
        write_delivered.send(sender=Write, write=held.write)
    return "delivered"


def _fail(held: Claim, code: str, sentence: str) -> str:
    with transaction.atomic():
        if not held.update(
            status=Write.Status.FAILED,
            claim_token=None,
            lease_until=None,
            error_code=code[:64],
            error=sentence,
            finished_at=timezone.now(),
        ):
            return "claim lost"
        queueing.after_final(held.write)
        write_failed.send(sender=Write, write=held.write)
    log.info("Write %s failed: %s", held.write.uid, code)
    return "failed"


def _retry(held: Claim, code: str, sentence: str, retry_after: float | None = None) -> str:
    attempts = held.write.attempts
    if attempts >= settings.WRITES_MAX_ATTEMPTS:
        return _fail(held, code, f"{sentence} Gave up after {attempts} attempts.")
    delay = max(backoff(attempts), retry_after or 0.0)
    with transaction.atomic():
        if not held.update(
            status=Write.Status.QUEUED,
            claim_token=None,
            lease_until=None,
            next_attempt_at=timezone.now() + timedelta(seconds=delay),
            error_code=code[:64],
            error=sentence,
        ):
            return "claim lost"
        queueing.enqueue(held.write.pk, countdown=delay)
    return "retry"
