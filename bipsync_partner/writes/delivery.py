"""Delivering writes: claim one, choose its connection, send it, record the outcome; a team's
due writes one after another in one task (:func:`deliver_due`), or one named write
(:func:`deliver`).

The outcome is one of:

- delivered: the Bipsync id is kept, and the next write of the same ordering key is queued;
- retried later: Bipsync was unavailable, rate-limited us, or may have acted without telling us
  (the write stays ``uncertain``, so the next attempt looks it up first); backoff with jitter,
  the Retry-After of a 429 when longer, up to ``WRITES_MAX_ATTEMPTS``;
- failed: a reason that trying again cannot fix (a validation error, with Bipsync's own words;
  403, the server's address not allow-listed; a connection that cannot write).

A run of :func:`deliver_due` keeps what every write of the run would otherwise read again: the
team's writing connection, and one API client per connection (its token, kept until it nears
expiry, and one keep-alive HTTP client). It claims its writes a group at a time
(``WRITES_GROUP_SIZE``, one statement and one durable commit for the group) and records the
group's delivered outcomes together once the group is sent (one statement and one transaction,
which does not wait for the disk, see :func:`_commit_without_waiting_for_the_flush`): the
database round trips and commits were most of what a note cost beyond its POST, on the cores the
sandbox's answers need as well (bench/README.md, "Writes"). A run that stops before the end of a
group (a lease half gone, an error) gives the writes it has not sent back, as they were. The next
write of an ordering key needs no queueing, as the run's next claim (or another worker's) takes
it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection as db
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
from bipsync_partner.writes.claims import (
    Candidate,
    Claim,
    NotClaimed,
    claim,
    claim_candidates,
    due_candidates,
    give_back,
    record_delivered,
)
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


@dataclass
class Run:
    """What one delivery run reuses from write to write (see the module docstring).

    ``chain``: whether an ending write queues the next of its ordering key. A run of
    :func:`deliver_due` does not: its next claim takes that write itself.
    ``grouped``: whether delivered outcomes wait in ``delivered`` to be recorded with the rest
    of their group (:func:`record_group`) rather than at once.
    """

    chain: bool = True
    grouped: bool = False
    connections: dict[object, Connection | WriteRefusal] = field(default_factory=dict)
    apis: dict[object, BipsyncApi] = field(default_factory=dict)
    outcomes: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Sent and delivered, the outcome not yet recorded: the claim and Bipsync's id.
    delivered: list[tuple[Claim, str]] = field(default_factory=list)
    #: Claimed with the group being sent but not sent yet: given back should the run stop.
    unsent: list[Claim] = field(default_factory=list)

    def connection_for(self, write: Write) -> Connection:
        key = write.connection_id if write.connection_id is not None else ("team", write.team_id)
        if key not in self.connections:
            try:
                self.connections[key] = writing_connection(write)
            except WriteRefusal as refusal:
                self.connections[key] = refusal
        found = self.connections[key]
        if isinstance(found, WriteRefusal):
            raise found
        return found

    def api_for(self, connection: Connection) -> BipsyncApi:
        if connection.pk not in self.apis:
            self.apis[connection.pk] = api_for(connection)
        return self.apis[connection.pk]

    def count(self, write: Write, outcome: str) -> None:
        key = (write.kind, outcome)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1

    def close(self) -> None:
        """Record what was delivered, give back what was not sent, and close the clients."""
        try:
            record_group(self)
            if self.unsent:
                unsent, self.unsent = self.unsent, []
                give_back(unsent)
        except Exception:
            # What was delivered stays "sending" and uncertain, so the next claimant looks it
            # up rather than sending it twice; what was not sent waits for its lease.
            log.exception("A delivery run could not record its last outcomes")
        for api in self.apis.values():
            api.close()
        self.apis.clear()
        for (kind, outcome), amount in self.outcomes.items():
            metrics.inc("bipsync_writes", amount, kind=kind, outcome=outcome)
        self.outcomes.clear()


def deliver(write_id: int) -> str:
    """Deliver the write if it is this worker's to deliver now; a word saying what happened."""
    try:
        held = claim(write_id)
    except NotClaimed as not_claimed:
        return not_claimed.reason
    run = Run(chain=True)
    try:
        return _outcome(run, held)
    finally:
        run.close()


@dataclass(frozen=True)
class RunResult:
    #: How many writes the run attempted.
    attempted: int
    #: True when it stopped at its size or time budget with writes perhaps still due.
    more: bool


#: Due writes read at a time by a run; they are then claimed a group at a time.
CANDIDATES = 50


def deliver_due(team_id: int) -> RunResult:
    """Deliver the team's due writes a group after another, each group claimed as the run
    reaches it (other workers running for the team take others), until none is due or the run
    has done ``WRITES_BATCH_SIZE`` writes or spent ``WRITES_BATCH_SECONDS``; a run that stopped
    at its budget queues the next one."""
    queueing.started(team_id)
    # The budget stays well inside the task's time limit, so a run never outlives its task.
    budget = min(float(settings.WRITES_BATCH_SECONDS), settings.WRITES_TASK_SOFT_TIME_LIMIT / 2)
    deadline = time.monotonic() + budget
    run = Run(chain=False, grouped=True)
    attempted = 0
    try:
        while candidates := due_candidates(team_id, CANDIDATES):
            # Runs of one team at once start at different places, so they seldom both try to
            # claim the same write.
            start = random.randrange(len(candidates))
            taken = 0
            for group in _groups(candidates[start:] + candidates[:start]):
                room = settings.WRITES_BATCH_SIZE - attempted
                if room <= 0 or time.monotonic() >= deadline:
                    queueing.enqueue(team_id)
                    return RunResult(attempted=attempted, more=True)
                # Those another worker took, or that wait for an earlier write, are not taken.
                held = claim_candidates(team_id, group[:room])
                if held and attempted == 0:
                    # Due writes may outnumber this run: let another worker join it.
                    queueing.enqueue(team_id)
                sent = _send_group(run, held)
                attempted += sent
                taken += sent
            if not taken:
                break
    finally:
        run.close()
    return RunResult(attempted=attempted, more=False)


def _groups(candidates: Sequence[Candidate]) -> Iterator[Sequence[Candidate]]:
    size = settings.WRITES_GROUP_SIZE
    for start in range(0, len(candidates), size):
        yield candidates[start : start + size]


def _send_group(run: Run, group: list[Claim]) -> int:
    """Send the claimed group's writes one after another, then record their outcomes; how many
    were sent. The writes it has not reached when half their lease is gone go back unsent, so
    that a lease never runs out on a write waiting in a slow group."""
    claimed = time.monotonic()
    for index, held in enumerate(group):
        if time.monotonic() - claimed > settings.WRITES_LEASE_SECONDS / 2:
            run.unsent = []
            give_back(group[index:])
            record_group(run)
            return index
        run.unsent = group[index + 1 :]
        _outcome(run, held)
    record_group(run)
    return len(group)


def record_group(run: Run) -> set[int]:
    """Record the delivered outcomes waiting in the run: one fenced statement for all of them
    and ``write_delivered`` for those whose claim still held, in one transaction that does not
    wait for its flush (see :func:`_commit_without_waiting_for_the_flush`); the ids recorded."""
    if not run.delivered:
        return set()
    waiting, run.delivered = run.delivered, []
    with transaction.atomic():
        _commit_without_waiting_for_the_flush()
        recorded = record_delivered(waiting)
        writes = [held.write for held, _ in waiting if held.write.pk in recorded]
        for write in writes:
            if run.chain:
                queueing.after_final(write)
        if writes:
            write_delivered.send(sender=Write, writes=writes)
    for held, _ in waiting:
        run.count(held.write, "delivered" if held.write.pk in recorded else "claim lost")
    return recorded


def _outcome(run: Run, held: Claim) -> str:
    try:
        bipsync_id = _send(run, held)
    except Terminal as terminal:
        return _fail(run, held, terminal.code, terminal.sentence)
    except ApiError as error:
        # A grant that must be reconnected (or refused even after a refresh) is a person's
        # job, not the write's fault: the write waits for it, up to its attempts.
        if error.transient or (
            isinstance(error, TokenUnavailable | NotAuthorized)
            and not isinstance(error, InsufficientScope)
        ):
            return _retry(run, held, error.code, error.sentence, error.retry_after)
        return _fail(run, held, error.code, error.sentence)
    except files.FileProblem as problem:
        return _fail(run, held, "file_problem", str(problem))
    except Exception as exc:
        log.exception("Write %s failed unexpectedly", held.write.uid)
        return _retry(
            run, held, "unexpected", f"The app hit an unexpected error ({type(exc).__name__})."
        )
    return _deliver(run, held, bipsync_id)


def _send(run: Run, held: Claim) -> str:
    write = held.write
    if write.depends_on_id is not None:
        _take_parent(held, write.depends_on_id)
    try:
        connection = run.connection_for(write)
    except WriteRefusal as refusal:
        if not refusal.final:
            raise ApiError(refusal.sentence, code=refusal.code, transient=True) from None
        raise Terminal(refusal.code, refusal.sentence) from None
    # Recorded with the outcome (every outcome's update names it), not in a statement of its own.
    write.connection_id = connection.pk
    author = _author(write, connection)
    return SENDERS[Write.Kind(write.kind)](run.api_for(connection), held, author)


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


def _commit_without_waiting_for_the_flush() -> None:
    """Let the current transaction (an outcome's) commit without waiting for its WAL flush, a
    disk flush per write that was half of a delivery's cost.

    Exactly once still holds when PostgreSQL crashes before the flush and the outcome is lost:
    the claim, which commits synchronously before anything is sent, left the write "sending" and
    ``uncertain``, so once its lease runs out the next claimant looks the note up by its external
    id before it sends anything, and adopts it. Order holds too: WAL is flushed in order, so the
    synchronous claim of the next write of the key (possible only once this outcome is visible)
    makes this outcome durable first. What a signal's receiver writes is lost or kept with it, and
    is written again when the write's outcome is.
    """
    with db.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")


def _deliver(run: Run, held: Claim, bipsync_id: str) -> str:
    """The write was delivered: its outcome is recorded with its group's, or at once."""
    run.delivered.append((held, bipsync_id))
    if run.grouped:
        return "delivered"
    return "delivered" if held.write.pk in record_group(run) else "claim lost"


def _fail(run: Run, held: Claim, code: str, sentence: str) -> str:
    """Record the final failure (fenced on the claim) and send ``write_failed`` in its
    transaction; chain the next write of the key when the run does not take it itself."""
    with transaction.atomic():
        _commit_without_waiting_for_the_flush()
        failed = held.update(
            status=Write.Status.FAILED,
            error_code=code[:64],
            error=sentence,
            claim_token=None,
            lease_until=None,
            finished_at=timezone.now(),
            connection_id=held.write.connection_id,
        )
        if failed:
            if run.chain:
                queueing.after_final(held.write)
            write_failed.send(sender=Write, writes=[held.write])
    outcome = "failed" if failed else "claim lost"
    run.count(held.write, outcome)
    if failed:
        log.info("Write %s failed: %s", held.write.uid, code)
    return outcome


def _retry(
    run: Run, held: Claim, code: str, sentence: str, retry_after: float | None = None
) -> str:
    attempts = held.write.attempts
    if attempts >= settings.WRITES_MAX_ATTEMPTS:
        return _fail(run, held, code, f"{sentence} Gave up after {attempts} attempts.")
    delay = max(backoff(attempts), retry_after or 0.0)
    with transaction.atomic():
        _commit_without_waiting_for_the_flush()
        retried = held.update(
            status=Write.Status.QUEUED,
            claim_token=None,
            lease_until=None,
            next_attempt_at=timezone.now() + timedelta(seconds=delay),
            error_code=code[:64],
            error=sentence,
            connection_id=held.write.connection_id,
        )
        if retried:
            queueing.enqueue(held.write.team_id, countdown=delay)
    outcome = "retry" if retried else "claim lost"
    run.count(held.write, outcome)
    return outcome
