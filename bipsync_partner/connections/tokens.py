"""The token service: the one place that hands out access tokens and refreshes them.

Every job, view and API client asks :func:`get_access_token` for a usable token. When the stored
token is within a leeway of its expiry, the service refreshes it, and the protocol for that is
built around one fact (docs/bipsync.md, "Grants"): **Bipsync rotates the refresh token on
every use and revokes the old pair.** A refresh token can be spent once; if two processes spend
it, one of them gets ``invalid_grant``, and if the new pair is lost, the connection is dead.
Therefore:

1. The refresh runs under a Postgres row lock (``SELECT ... FOR UPDATE``) and the row is re-read
   after the lock is taken. Whoever waited for the lock finds the new token and uses it, so any
   number of web processes and workers cause exactly one refresh per rotation. Within one
   process, concurrent callers do not even queue on the lock: they share the one refresh in
   flight and take its outcome.
2. Once Bipsync has answered with a new pair, that pair is stored, whatever fails after it. The
   tokens are written first, in the refresh's own (durable) transaction, so a rollback of a
   caller's transaction can never lose them (a refresh inside ``transaction.atomic()`` is
   refused); the history line after them is written under a savepoint, so failing to write it
   never undoes them. When a write or the commit fails on a transient database error (or the
   refresh is left early by any exception) after Bipsync rotated, the same tokens are written
   again in a new transaction, after each of ``STORE_RETRY_DELAYS``. If they still cannot be
   stored, the connection becomes ``needs_reconnect`` with :data:`NOT_STORED_SENTENCE`: the
   admins are told the database lost the token, not that Bipsync revoked it.
3. A 200 answer that carries a new refresh token but is unusable otherwise (a missing access
   token, a type other than Bearer, ...: :class:`~bipsync_partner.oauth.UnusableTokenResponse`)
   does not throw the new refresh token away, since the old one is dead: it is written at once
   and spent again straight away (``UNUSABLE_ANSWER_ATTEMPTS`` requests in all); after that it
   is kept and the connection backs off as in 5.
4. ``invalid_grant`` re-reads the row: if another process rotated in the meantime, its token is
   used. Otherwise the grant is really gone and the connection becomes ``needs_reconnect``, with
   a sentence saying why. When the previous attempt failed in a way where Bipsync may have
   rotated the token but the reply never reached us (a dropped connection or timeout), the
   sentence says exactly that.
5. Transient failures (network, timeout, 5xx, 429, unreadable bodies) never set
   ``needs_reconnect``: the connection is ``failing`` with ``next_retry_at`` set by exponential
   back-off with jitter (and at least ``Retry-After``). Until then nobody calls Bipsync for it —
   callers get the still-valid access token if there is one, or :class:`TokenTemporarilyUnavailable`
   at once — so a failing tenant sees no retry storm. A 429 also closes the tenant's gate
   (bipsync_partner/coordination.py) for every process: while it is closed no refresh of that tenant,
   inline or swept, calls Bipsync, and nothing is recorded against the waiting connections.
6. A token is due when it expires within the leeway, but the leeway is never more than half the
   token's lifetime (:func:`~bipsync_partner.connections.models.scaled_leeway`, the one rule of
   the model, the sweep, this service and the API client), so a token that lives less than the
   leeway is refreshed once per lifetime, not on every call.
7. Client-credentials connections have no refresh token: they acquire a new token with the
   customer's client id and secret when theirs expires; a refresh token in their answer is
   ignored (RFC 6749 §4.4.3), never stored.

Tokens never leave this module in a message, log line, exception or event.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal
from uuid import UUID

import httpx
import psycopg.errors
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.db import connection as db_connection
from django.utils import timezone

from bipsync_partner.connections import breaker, clients, fastdb, incidents
from bipsync_partner.connections.fields import EncryptedTextField
from bipsync_partner.connections.models import Connection, ConnectionEvent
from bipsync_partner.connections.signals import connection_needs_reconnect, history_appended
from bipsync_partner.coordination import TenantGate
from bipsync_partner.oauth import OAuthError, Token, TransportError, UnusableTokenResponse

log = logging.getLogger(__name__)

#: Our code for "the request never reached Bipsync" (connect refused or timed out): nothing can
#: have been rotated.
UNREACHABLE: Final = "bipsync_unreachable"
#: Our code for a 429 from the token endpoint (its Retry-After sets ``next_retry_at``).
RATE_LIMITED: Final = "rate_limited"
#: Failures after which Bipsync may have processed the refresh and rotated the token although we
#: never saw the reply.
REPLY_MAY_BE_LOST: Final = frozenset({"network_error", "timeout"})
#: Errors that mean a machine connection's own credentials no longer work.
CLIENT_CREDENTIALS_REFUSALS: Final = frozenset(
    {"invalid_client", "unauthorized_client", "invalid_scope", "invalid_grant"}
)

LOST_REPLY_SENTENCE: Final = (
    "Bipsync rotated the refresh token but the reply never arrived, so the new token was lost; "
    "reconnect to continue."
)
INVALID_GRANT_SENTENCE: Final = (
    "Bipsync no longer accepts this connection's refresh token (invalid_grant): access was "
    "revoked or expired; reconnect to continue."
)
NO_REFRESH_TOKEN_SENTENCE: Final = (
    "Bipsync gave this connection no refresh token, so its expired access token cannot be "
    "renewed; reconnect to continue."
)
NOT_STORED_SENTENCE: Final = (
    "Bipsync rotated the refresh token, but the database could not store the new one, so it "
    "was lost; reconnect to continue."
)
TENANT_WAITING_SENTENCE: Final = (
    "Bipsync asked the app to slow down for this site; the app will try again on its own."
)
#: Database errors after which writing again may succeed: a dropped or restarted server, a
#: failover, a serialization failure or deadlock (PostgreSQL classes 08, 40, 57).
DATABASE_HICCUPS: Final = (OperationalError, InterfaceError)
#: Pauses before each new attempt to store a rotation whose commit failed: about 15 s in all.
#: A rotation not stored is a connection lost until a person reconnects it, so the attempts
#: outlast a PostgreSQL crash and restart on a busy host (the soak's restart, with crash
#: recovery under load, took longer than the 3 s these once covered), while staying well inside
#: a web request's 30 s (gunicorn_conf.py) and a refresh task's soft time limit.
STORE_RETRY_DELAYS: Final = (0.0, 0.25, 1.0, 2.0, 4.0, 8.0)
#: Token requests one refresh may make when Bipsync's 200 answers rotate the refresh token but
#: are unusable otherwise (each rescued refresh token is spent at once by the next request).
UNUSABLE_ANSWER_ATTEMPTS: Final = 2


class TokenError(Exception):
    """The service cannot hand out a token. ``code`` is machine-readable, the message a
    sentence for people; ``transient`` says whether asking again later may succeed."""

    transient: bool = False

    def __init__(
        self, message: str, *, code: str, connection_id: UUID, retry_at: datetime | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.connection_id = connection_id
        self.retry_at = retry_at


class ReconnectRequired(TokenError):
    """The connection is ``needs_reconnect`` or ``disconnected``: a person must act."""

    transient = False


class TokenTemporarilyUnavailable(TokenError):
    """Bipsync could not be reached or refused for now; ``retry_at`` says when to try again."""

    transient = True


@dataclass(frozen=True)
class RefreshResult:
    """What :func:`refresh_connection` did, for the sweep's logs and metrics.

    ``code`` is the connection's ``last_error_code`` after a failure (``rate_limited`` for a 429,
    whose ``retry_at`` honours Retry-After); ``retry_at`` is when the service will try again.
    """

    outcome: Literal[
        "refreshed",
        "not_due",
        "backing_off",
        "failed",
        "needs_reconnect",
        "skipped",
        "already_rotated",
        "in_progress",
    ]
    connection_id: UUID | str
    message: str = ""
    code: str = ""
    retry_at: datetime | None = None


@dataclass
class _Outcome:
    token: str | None = None
    refreshed: bool = False
    error: TokenError | None = None
    needs_reconnect: str | None = None


@dataclass
class _Writes:
    """What one refresh wrote in its transaction, so that it can be written again when the
    commit fails after Bipsync rotated the refresh token (the old one is dead by then)."""

    conn: Connection | None = None
    outcome: _Outcome | None = None
    fields: set[str] = field(default_factory=set)
    events: list[tuple[str, str]] = field(default_factory=list)
    #: The refresh token the refresh started from (what the row holds until a commit lands).
    refresh_before: str | None = None
    #: Bipsync rotated: the in-memory refresh token is the only live one.
    rotated: bool = False

    def update(self, conn: Connection, names: list[str], *, rotated: bool = False) -> None:
        self.conn = conn
        self.fields.update(names)
        self.rotated = self.rotated or rotated
        fastdb.update_connection(conn, names)

    def event(self, conn: Connection, kind: str, message: str) -> None:
        self.events.append((kind, message))
        _append_event(conn, kind, message)

    def result(self) -> tuple[Connection, _Outcome]:
        assert self.conn is not None
        assert self.outcome is not None
        return self.conn, self.outcome


DueCheck = Callable[[Connection, datetime], bool]


# --- settings ---------------------------------------------------------------------------------


def access_leeway() -> timedelta:
    """Refresh when the access token expires within this (default 60 s)."""
    return timedelta(seconds=settings.BIPSYNC_TOKEN_LEEWAY_SECONDS)


def _refresh_token_lifetime() -> timedelta:
    # Bipsync does not say when a refresh token lapses; 30 days is the reference's [choice].
    return timedelta(seconds=settings.BIPSYNC_REFRESH_TOKEN_LIFETIME_SECONDS)


def _lock_timeout() -> timedelta:
    # Longer than one whole token exchange (twice the HTTP timeout), so that a waiter only gives
    # up when the holder is truly stuck.
    return timedelta(seconds=settings.BIPSYNC_REFRESH_LOCK_TIMEOUT_SECONDS)


def backoff_delay(failures: int, retry_after: float | None = None) -> timedelta:
    """Exponential back-off with jitter: uniform in [ceiling/2, ceiling], ceiling = base·2^(n-1)
    capped; never shorter than the server's ``Retry-After``. The jitter spreads the retries of
    many connections of one tenant that failed together."""
    base = float(settings.BIPSYNC_REFRESH_BACKOFF_BASE_SECONDS)
    cap = float(settings.BIPSYNC_REFRESH_BACKOFF_CAP_SECONDS)
    ceiling = min(cap, base * 2 ** max(0, failures - 1))
    delay = random.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return timedelta(seconds=delay)


# --- what is due ------------------------------------------------------------------------------


def _access_due(conn: Connection, now: datetime) -> bool:
    return conn.access_token_expires_within(access_leeway(), now=now)


def _still_valid(conn: Connection, now: datetime) -> str | None:
    """The stored access token if it has not expired yet (even if within the leeway)."""
    if not conn.has_access_token:
        return None
    if conn.access_expires_at is not None and conn.access_expires_at <= now:
        return None
    token: str | None = conn.access_token
    return token


def _backing_off(conn: Connection, now: datetime) -> bool:
    return (
        conn.status == Connection.Status.FAILING
        and conn.next_retry_at is not None
        and conn.next_retry_at > now
    )


def _unusable_error(conn: Connection) -> ReconnectRequired:
    if conn.status == Connection.Status.DISCONNECTED:
        return ReconnectRequired(
            "This connection was disconnected; connect again to use it.",
            code="disconnected",
            connection_id=conn.pk,
        )
    return ReconnectRequired(
        conn.last_error_message or conn.status_sentence,
        code=conn.last_error_code or "needs_reconnect",
        connection_id=conn.pk,
    )


def _waiting_error(conn: Connection) -> TokenTemporarilyUnavailable:
    return TokenTemporarilyUnavailable(
        conn.last_error_message or "Bipsync could not be reached; the app will try again.",
        code=conn.last_error_code or "failing",
        connection_id=conn.pk,
        retry_at=conn.next_retry_at,
    )


def _valid_or_waiting(conn: Connection, now: datetime) -> _Outcome:
    """The still-valid access token if there is one, else "try again after next_retry_at"."""
    token = _still_valid(conn, now)
    return _Outcome(token=token, error=None if token else _waiting_error(conn))


# --- public API -------------------------------------------------------------------------------


def get_access_token(connection: Connection) -> str:
    """A usable access token for ``connection``, refreshing it first when it is within the
    leeway of its expiry. ``connection`` is reloaded from the database (and left up to date).

    Raises :class:`ReconnectRequired` (a person must reconnect) or
    :class:`TokenTemporarilyUnavailable` (try again after ``retry_at``).
    """
    connection.refresh_from_db()
    now = timezone.now()
    if not connection.is_usable:
        raise _unusable_error(connection)
    if not _access_due(connection, now):
        return _token_of(connection)
    if _backing_off(connection, now):
        token = _still_valid(connection, now)
        if token is not None:
            return token
        raise _waiting_error(connection)
    try:
        outcome = _shared_refresh(connection, _access_due)
    except TokenTemporarilyUnavailable as error:
        # The tenant's breaker is open: as while backing off, a still-valid token will do.
        token = _still_valid(connection, now) if error.code == breaker.TENANT_FAILING else None
        if token is None:
            raise
        return token
    if outcome.error is not None:
        raise outcome.error
    assert outcome.token is not None
    return outcome.token


def refresh_after_rejection(connection: Connection, rejected: str) -> str:
    """Bipsync answered 401 to ``rejected``: return a newer token, refreshing unless another
    process already did. Same errors as :func:`get_access_token`."""

    def due(conn: Connection, now: datetime) -> bool:
        return _access_due(conn, now) or conn.access_token == rejected

    connection.refresh_from_db()
    now = timezone.now()
    if not connection.is_usable:
        raise _unusable_error(connection)
    if not due(connection, now):
        return _token_of(connection)
    if _backing_off(connection, now):
        raise _waiting_error(connection)
    outcome = _shared_refresh(connection, due)
    if outcome.error is not None:
        raise outcome.error
    assert outcome.token is not None
    return outcome.token


def refresh_connection(
    connection_id: UUID | str,
    *,
    access_window: timedelta | None = None,
    refresh_window: timedelta | None = None,
    expected_version: int | None = None,
    wait: bool = True,
    turn: AbstractContextManager[object] | None = None,
) -> RefreshResult:
    """Refresh one connection if it is due, for the Celery sweep; never raises for an expected
    outcome (the result says what happened), so a task never retries on its own.

    Due means: the access token expires within ``access_window`` (default
    ``REFRESH_ACCESS_WINDOW_SECONDS``, 600 s), or the refresh token within ``refresh_window``
    (default ``REFRESH_REFRESH_WINDOW_SECONDS``, 3 days) so that an idle connection never lapses.

    ``expected_version``: the version the sweep saw; if the row has moved on, someone rotated in
    the meantime and there is nothing to do (``already_rotated``). ``wait=False``: when another
    process holds the row's lock (it is refreshing right now), return ``in_progress`` at once
    instead of waiting for it; the sweep has no use for the token, so waiting would only hold a
    worker. Every check is made under the row lock, in the one read that takes it.

    ``turn``: entered around the request to Bipsync only; the sweep's pipelined batches pass
    one per batch so that a batch has at most one request in flight while it prepares the next
    refresh and commits the last. An exception from entering it aborts the refresh before any
    request: the transaction rolls back and the exception propagates.
    """
    access = access_window or timedelta(seconds=settings.REFRESH_ACCESS_WINDOW_SECONDS)
    refresh = refresh_window or timedelta(seconds=settings.REFRESH_REFRESH_WINDOW_SECONDS)

    def due(conn: Connection, now: datetime) -> bool:
        return conn.is_due_for_refresh(now=now, access_window=access, refresh_window=refresh)

    writes = _Writes()
    with _storing(writes), _row_lock(connection_id, wait=wait) as locked:
        if locked is None:
            return _why_not_locked(connection_id, wait)
        skipped = _not_for_refresh(locked, due, expected_version)
        if skipped is not None:
            return skipped
        writes.outcome = _refresh_locked(locked, due, writes, turn)
    stored, outcome = writes.result()
    _notify(stored, outcome)
    return _result_of(stored, outcome)


def _result_of(conn: Connection, outcome: _Outcome) -> RefreshResult:
    if outcome.needs_reconnect is not None:
        return RefreshResult(
            "needs_reconnect", conn.pk, outcome.needs_reconnect, code=conn.last_error_code
        )
    if outcome.refreshed:
        return RefreshResult("refreshed", conn.pk)
    if outcome.error is not None or conn.status == Connection.Status.FAILING:
        return _with_last_error("failed", conn)
    return RefreshResult("not_due", conn.pk, "Another process refreshed it first.")


def _why_not_locked(connection_id: UUID | str, waited: bool) -> RefreshResult:
    if not waited and Connection.objects.filter(pk=connection_id).exists():
        return RefreshResult("in_progress", connection_id, "Another process holds its lock.")
    return RefreshResult("skipped", connection_id, "The connection no longer exists.")


def _not_for_refresh(
    conn: Connection, due: DueCheck, expected_version: int | None
) -> RefreshResult | None:
    """Why the sweep should leave this (locked) connection alone, or None to refresh it."""
    if expected_version is not None and conn.version != expected_version:
        return RefreshResult("already_rotated", conn.pk)
    now = timezone.now()
    if not conn.is_usable:
        return RefreshResult("skipped", conn.pk, conn.status_sentence)
    if not due(conn, now):
        return RefreshResult("not_due", conn.pk)
    if _backing_off(conn, now):
        return _with_last_error("backing_off", conn)
    return None


def _with_last_error(outcome: Literal["failed", "backing_off"], conn: Connection) -> RefreshResult:
    return RefreshResult(
        outcome,
        conn.pk,
        conn.last_error_message,
        code=conn.last_error_code,
        retry_at=conn.next_retry_at,
    )


# --- the locked refresh -----------------------------------------------------------------------


def _token_of(conn: Connection) -> str:
    token: str | None = conn.access_token
    assert token is not None
    return token


def _sealed_refresh_token(conn: Connection) -> str | None:
    field = Connection._meta.get_field("refresh_token")
    assert isinstance(field, EncryptedTextField)
    sealed = field.sealed(conn)
    return sealed.ciphertext if sealed is not None else None


def _copy_state(source: Connection, target: Connection) -> None:
    """Give the caller's instance the row as it was committed (sealed values included)."""
    for column in Connection._meta.concrete_fields:
        if column.attname in source.__dict__:
            target.__dict__[column.attname] = source.__dict__[column.attname]


#: Run first in every transaction that stores tokens. ``synchronous_commit = on``: a rotated
#: refresh token is the grant's only copy (docs/bipsync.md, rotation), so its commit waits for
#: the WAL flush even in a session that runs with ``synchronous_commit = off`` (a sync slice does,
#: for its pages, and refreshes inside it); otherwise a PostgreSQL crash could undo a commit the
#: caller already acted on. ``lock_timeout`` (NULL leaves it unchanged) bounds a waiter's wait.
_TRANSACTION_SETTINGS = (
    "SELECT set_config('synchronous_commit', 'on', true), "
    "set_config('lock_timeout', coalesce(%s, current_setting('lock_timeout')), true)"
)


@contextlib.contextmanager
def _row_lock(connection_id: UUID | str, *, wait: bool) -> Iterator[Connection | None]:
    """A durable transaction holding the connection's row lock; yields the row read under it
    (None if there is no such row, or, with ``wait=False``, if another process holds it)."""
    try:
        # durable: the new tokens must be committed when this block ends, not when some outer
        # transaction of the caller does (and never rolled back with it).
        with transaction.atomic(durable=True):
            with db_connection.cursor() as cursor:
                # A waiter gives up, rather than hang, if the holder is stuck (a frozen VM).
                timeout = f"{int(_lock_timeout().total_seconds() * 1000)}ms" if wait else None
                cursor.execute(_TRANSACTION_SETTINGS, [timeout])
            yield fastdb.lock_connection(connection_id, skip_locked=not wait)
    except OperationalError as exc:
        if not isinstance(exc.__cause__, psycopg.errors.LockNotAvailable):
            raise
        log.warning("Gave up waiting for the refresh lock of connection %s", connection_id)
        raise TokenTemporarilyUnavailable(
            "Another process has been refreshing this connection's tokens for too long; try "
            "again shortly.",
            code="lock_timeout",
            connection_id=UUID(str(connection_id)),
        ) from None
    except RuntimeError as exc:
        if "durable" not in str(exc):
            raise
        raise RuntimeError(
            "The token service must not run inside transaction.atomic(): a rotated refresh "
            "token has to be committed the moment it arrives, or a rollback would lose it."
        ) from exc


def _notify(connection: Connection, outcome: _Outcome) -> None:
    # After the commit: the admins' email must describe what is stored.
    if outcome.needs_reconnect is not None:
        connection_needs_reconnect.send(
            sender=Connection, connection=connection, reason=outcome.needs_reconnect
        )


@dataclass
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)
    outcome: _Outcome | None = None


_flights: dict[tuple[int, str], _Flight] = {}
_flights_lock = threading.Lock()


def _shared_refresh(connection: Connection, due: DueCheck) -> _Outcome:
    """One refresh per connection in flight per process: the first caller refreshes under the
    row lock, the others wait for it here and take its outcome, instead of each holding a
    database connection queued on the row lock only to find the new token."""
    key = (os.getpid(), str(connection.pk))  # per pid: a forked child has its own flights
    with _flights_lock:
        flight = _flights.get(key)
        leader = flight is None
        if flight is None:
            flight = _flights[key] = _Flight()
    if leader:
        try:
            flight.outcome = _refresh_under_lock(connection, due)
            return flight.outcome
        finally:
            with _flights_lock:
                del _flights[key]
            flight.done.set()
    if not flight.done.wait(2 * _lock_timeout().total_seconds()):
        raise TokenTemporarilyUnavailable(
            "Another request has been refreshing this connection's tokens for too long; try "
            "again shortly.",
            code="lock_timeout",
            connection_id=connection.pk,
        )
    connection.refresh_from_db()
    outcome = flight.outcome
    if outcome is not None and (outcome.error is not None or not due(connection, timezone.now())):
        return _Outcome(token=outcome.token, error=outcome.error)
    # The leader failed unexpectedly, or its token does not do for this caller (it is the one
    # a refresh_after_rejection caller saw refused): refresh in our own right.
    return _refresh_under_lock(connection, due)


def _refresh_under_lock(connection: Connection, due: DueCheck) -> _Outcome:
    writes = _Writes()
    with _storing(writes), _row_lock(connection.pk, wait=True) as locked:
        if locked is None:
            raise Connection.DoesNotExist("The connection no longer exists.")
        writes.outcome = _refresh_locked(locked, due, writes)
    stored, outcome = writes.result()
    _copy_state(stored, connection)
    _notify(connection, outcome)
    return outcome


def _refresh_locked(
    locked: Connection,
    due: DueCheck,
    writes: _Writes,
    turn: AbstractContextManager[object] | None = None,
) -> _Outcome:
    writes.conn = locked
    now = timezone.now()
    if not locked.is_usable:
        return _Outcome(error=_unusable_error(locked))
    if not due(locked, now):
        # Someone refreshed while we waited for the lock: theirs is ours.
        return _Outcome(token=_still_valid(locked, now))
    if _backing_off(locked, now):
        return _valid_or_waiting(locked, now)
    if turn is None and (waiting := _tenant_waiting(locked, now)) is not None:
        return waiting
    is_machine = locked.kind_spec.grant == "client_credentials"
    if not is_machine and not locked.has_refresh_token:
        return _needs_reconnect(locked, "no_refresh_token", NO_REFRESH_TOKEN_SENTENCE, writes)

    writes.refresh_before = None if is_machine else locked.refresh_token
    try:
        issued = _request_keeping_rotations(locked, turn or contextlib.nullcontext(), now, writes)
    except OAuthError as exc:
        return _failed(locked, exc, now, writes)

    refresh_expires_at: datetime | None
    if issued.refresh_token is not None and issued.refresh_token != writes.refresh_before:
        refresh_expires_at = issued.received_at + _refresh_token_lifetime()
    else:
        refresh_expires_at = locked.refresh_expires_at
    fields = locked.set_tokens(
        access_token=issued.access_token,
        refresh_token=None if is_machine else issued.refresh_token,
        access_expires_at=issued.expires_at,
        refresh_expires_at=refresh_expires_at,
        scopes=" ".join(issued.scopes) if issued.scopes else None,
        now=now,
    )
    writes.outcome = _Outcome(token=issued.access_token, refreshed=True)
    # The tokens first, so that nothing written after them can take them down (the hot path of
    # every refresh: hand-written statements, see fastdb's docstring).
    writes.update(locked, fields, rotated=not is_machine)
    expiry = f" until {issued.expires_at:%Y-%m-%d %H:%M:%S} UTC" if issued.expires_at else ""
    if is_machine:
        writes.event(
            locked,
            ConnectionEvent.Kind.TOKEN_ACQUIRED,
            f"Acquired a new access token, valid{expiry}.",
        )
    else:
        writes.event(
            locked,
            ConnectionEvent.Kind.REFRESHED,
            f"Refreshed the tokens; access is valid{expiry}.",
        )
    log.info("Refreshed the tokens of %r", locked)
    return writes.outcome


def _tenant_waiting(locked: Connection, now: datetime) -> _Outcome | None:
    """The tenant's "not before" gate (a Retry-After seen by any process, bipsync_partner/coordination.py)
    for a refresh outside the sweep, which reads the same gate in its batches' turn: while it
    is closed nobody calls Bipsync, and nothing is recorded against this connection."""
    wait = TenantGate(locked.tenant).remaining()
    if wait <= 0:
        return None
    token = _still_valid(locked, now)
    if token is not None:
        return _Outcome(token=token)
    return _Outcome(
        error=TokenTemporarilyUnavailable(
            TENANT_WAITING_SENTENCE,
            code=RATE_LIMITED,
            connection_id=locked.pk,
            retry_at=now + timedelta(seconds=wait),
        )
    )


def _request_keeping_rotations(
    locked: Connection, turn: AbstractContextManager[object], now: datetime, writes: _Writes
) -> Token:
    """The token request; when Bipsync answers 200 with a new refresh token but an otherwise
    unusable answer, the new refresh token is written at once (the old one is dead) and spent
    again straight away, up to ``UNUSABLE_ANSWER_ATTEMPTS`` requests in all."""
    for attempt in range(1, UNUSABLE_ANSWER_ATTEMPTS + 1):
        try:
            return _request_tokens(locked, turn)
        except UnusableTokenResponse as exc:
            if not _keep_rotated(locked, exc.refresh_token, now, writes):
                raise
            log.warning(
                "Bipsync rotated the refresh token of %r in an unusable answer (%s); kept it",
                locked,
                exc.error,
            )
            if attempt == UNUSABLE_ANSWER_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _keep_rotated(locked: Connection, refresh_token: str, now: datetime, writes: _Writes) -> bool:
    if not locked.kind_spec.has_refresh_token or refresh_token == locked.refresh_token:
        return False
    locked.refresh_token = refresh_token
    locked.refresh_expires_at = now + _refresh_token_lifetime()
    locked.version += 1
    writes.outcome = _valid_or_waiting(locked, now)
    writes.update(locked, ["refresh_token", "refresh_expires_at", "version"], rotated=True)
    return True


class _ReceiverFailed(Exception):
    """A receiver of ``history_appended`` raised (Django's ``send_robust`` logged it)."""


def _append_event(conn: Connection, kind: str, message: str) -> None:
    """One line of history under a savepoint, with what the receivers of ``history_appended``
    write for it (the events outbox): failing to write them (a trigger, a full disk for that
    table, a receiver's bug) must not undo the tokens written before them in the same
    transaction. If even the rollback to the savepoint fails, the transaction is lost and the
    error propagates."""
    savepoint = transaction.savepoint()
    try:
        fastdb.append_event(conn, kind, message)
        for _receiver, failure in history_appended.send_robust(
            sender=Connection, connection=conn, kind=kind, message=message
        ):
            if isinstance(failure, Exception):
                raise _ReceiverFailed from failure
    except (DatabaseError, _ReceiverFailed):
        transaction.savepoint_rollback(savepoint)
        log.warning("Could not record the %s event of %r; its tokens are kept", kind, conn)
    else:
        transaction.savepoint_commit(savepoint)


# --- storing a rotation whose transaction failed ----------------------------------------------


@contextlib.contextmanager
def _storing(writes: _Writes) -> Iterator[None]:
    """Around a refresh's transaction: if it fails (a transient database error in a write or the
    commit, or any exception once Bipsync has rotated), the rotated tokens in ``writes`` are
    written again in a new transaction. After a database error the refresh's outcome stands;
    any other exception propagates once the tokens are stored."""
    try:
        yield
    except DATABASE_HICCUPS:
        if not writes.rotated:
            raise
        log.warning("Storing the rotated tokens of %r failed; trying again", writes.conn)
        writes.outcome = _store_again(writes)
    except BaseException:
        if writes.rotated:
            log.warning("Left the refresh of %r early; storing its rotated tokens", writes.conn)
            writes.outcome = _store_again(writes)
        raise


def _store_again(writes: _Writes) -> _Outcome:
    """Write the rotated tokens again, retrying transient database errors after each of
    ``STORE_RETRY_DELAYS``; when they cannot be stored, say so (:data:`NOT_STORED_SENTENCE`)."""
    conn, outcome = writes.result()
    for delay in STORE_RETRY_DELAYS:
        time.sleep(delay)
        if not db_connection.in_atomic_block:
            # Each attempt on a fresh database connection: after a failover or a killed session
            # the old one can look usable and fail again (this path is rare; a connect is cheap).
            db_connection.close()
        try:
            with transaction.atomic(durable=True):
                with db_connection.cursor() as cursor:
                    cursor.execute(_TRANSACTION_SETTINGS, [None])
                current = fastdb.lock_connection(conn.pk, skip_locked=False)
                if current is None:
                    raise Connection.DoesNotExist("The connection no longer exists.")
                if current.refresh_token == conn.refresh_token:
                    return outcome  # the failed commit had landed after all
                if current.refresh_token != writes.refresh_before:
                    # Another writer stored a newer pair meanwhile; the row is the truth.
                    _copy_state(current, conn)
                    return _valid_or_waiting(conn, timezone.now())
                conn.version = current.version + 1
                fastdb.update_connection(conn, sorted(writes.fields))
                for kind, message in writes.events:
                    _append_event(conn, kind, message)
            log.info("Stored the rotated tokens of %r on a new attempt", conn)
            return outcome
        except DATABASE_HICCUPS:
            log.warning("Could not store the rotated tokens of %r yet", conn)
    return _not_stored(conn)


def _not_stored(conn: Connection) -> _Outcome:
    log.error("The rotated tokens of %r could not be stored; the grant is lost", conn)
    try:
        with transaction.atomic(durable=True):
            current = fastdb.lock_connection(conn.pk, skip_locked=False)
            if current is not None:
                _needs_reconnect(current, "not_stored", NOT_STORED_SENTENCE, _Writes())
                _copy_state(current, conn)
    except DATABASE_HICCUPS:
        log.error("Could not record either that %r needs reconnecting", conn)
    return _Outcome(
        error=ReconnectRequired(NOT_STORED_SENTENCE, code="not_stored", connection_id=conn.pk),
        needs_reconnect=NOT_STORED_SENTENCE,
    )


def _request_tokens(locked: Connection, turn: AbstractContextManager[object]) -> Token:
    resolved = clients.tenant(locked.tenant)
    if locked.kind_spec.own_application:
        client = clients.client_for(
            locked.kind, client_id=locked.client_id, client_secret=locked.client_secret
        )
    else:
        client = clients.client_for(locked.kind)
    refresh_token = locked.refresh_token
    scopes = locked.scope_list
    # The turn covers the metadata lookup too: on a miss it is a request to Bipsync as well.
    with breaker.calling(locked.tenant, locked.pk), turn, clients.http_client() as http:
        grants = clients.grant_client(resolved, client, http)
        if locked.kind_spec.grant == "client_credentials":
            # The grant adds team_{id} itself (Bipsync reference, "Grants").
            extra = [scope for scope in scopes if not scope.startswith("team_")]
            return grants.client_credentials(locked.bipsync_team_id, extra)
        assert refresh_token is not None
        return grants.refresh(refresh_token, previous_scopes=scopes)


def _failure_code(exc: OAuthError) -> str:
    if exc.status == 429:
        return RATE_LIMITED
    if isinstance(exc, TransportError) and isinstance(
        exc.__cause__, httpx.ConnectError | httpx.ConnectTimeout
    ):
        return UNREACHABLE
    return exc.error


def _transient_sentence(exc: OAuthError, code: str) -> str:
    later = "the app will try again on its own."
    if code == UNREACHABLE:
        return f"Bipsync could not be reached to refresh the tokens; {later}"
    if code == "timeout":
        return f"Bipsync did not answer the token refresh in time; {later}"
    if code == "network_error":
        return f"The connection to Bipsync broke during the token refresh; {later}"
    if exc.status == 429:
        return f"Bipsync asked the app to slow down (HTTP 429) during the token refresh; {later}"
    if exc.status is not None and exc.status >= 500:
        return (
            f"Bipsync answered the token refresh with a server error (HTTP {exc.status}); {later}"
        )
    if code == "invalid_response":
        return f"Bipsync's answer to the token refresh could not be read; {later}"
    return f"The token refresh failed for now ({code}); {later}"


def _failed(locked: Connection, exc: OAuthError, now: datetime, writes: _Writes) -> _Outcome:
    code = _failure_code(exc)
    is_machine = locked.kind_spec.grant == "client_credentials"
    held = incidents.hold(locked, exc)  # many refusals at once: an incident, the grant kept
    if (
        held is None
        and not exc.transient
        and (
            exc.error == "invalid_grant"
            or (is_machine and exc.error in CLIENT_CREDENTIALS_REFUSALS)
        )
    ):
        # Did another process rotate after all? (Under our lock it cannot have, unless a
        # writer bypassed the lock, but the grant is only declared dead once the row agrees.)
        current = Connection.objects.get(pk=locked.pk)
        if current.version != locked.version or _sealed_refresh_token(
            current
        ) != _sealed_refresh_token(locked):
            _copy_state(current, locked)
            token = _still_valid(current, now)
            if token is not None:
                return _Outcome(token=token)
        if is_machine:
            sentence = (
                "Bipsync no longer accepts this machine connection's credentials; reconnect it "
                "with a working client secret to continue."
            )
        elif locked.consecutive_failures > 0 and locked.last_error_code in REPLY_MAY_BE_LOST:
            sentence = LOST_REPLY_SENTENCE
        else:
            sentence = INVALID_GRANT_SENTENCE
        return _needs_reconnect(locked, exc.error, sentence, writes)

    # Transient, or terminal for a reason a reconnect cannot fix (our own configuration, the
    # tenant's metadata), or held for an incident: keep the grant, back off, say what happened.
    if held is not None:
        sentence = held.sentence
    elif exc.transient:
        sentence = _transient_sentence(exc, code)
    else:
        sentence = (
            "Bipsync refused the token refresh in a way a reconnect cannot fix; this looks like "
            "a configuration problem "
            "of the app or the tenant, and the app will try again later."
        )
    locked.consecutive_failures += 1
    locked.status = Connection.Status.FAILING
    delay = held.retry_in if held else backoff_delay(locked.consecutive_failures, exc.retry_after)
    locked.next_retry_at = now + delay
    locked.last_error_code = code[:64]
    locked.last_error_message = sentence
    writes.outcome = _valid_or_waiting(locked, now)
    writes.update(
        locked,
        [
            "consecutive_failures",
            "status",
            "next_retry_at",
            "last_error_code",
            "last_error_message",
        ],
    )
    writes.event(locked, ConnectionEvent.Kind.REFRESH_FAILED, sentence)
    log.warning("Refresh of %r failed (%s); next attempt at %s", locked, code, locked.next_retry_at)
    if code == RATE_LIMITED and locked.next_retry_at is not None:
        # Every process holds back from this tenant, inline callers and the sweep alike.
        TenantGate(locked.tenant).defer((locked.next_retry_at - now).total_seconds())
    return writes.outcome


def _needs_reconnect(locked: Connection, code: str, sentence: str, writes: _Writes) -> _Outcome:
    locked.status = Connection.Status.NEEDS_RECONNECT
    locked.consecutive_failures += 1
    locked.next_retry_at = None
    locked.last_error_code = code[:64]
    locked.last_error_message = sentence
    writes.outcome = _Outcome(
        error=ReconnectRequired(sentence, code=code, connection_id=locked.pk),
        needs_reconnect=sentence,
    )
    writes.update(
        locked,
        [
            "status",
            "consecutive_failures",
            "next_retry_at",
            "last_error_code",
            "last_error_message",
        ],
    )
    writes.event(locked, ConnectionEvent.Kind.NEEDS_RECONNECT, sentence)
    log.warning("%r needs reconnecting (%s)", locked, code)
    return writes.outcome
