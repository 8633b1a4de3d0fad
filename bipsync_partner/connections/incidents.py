"""The fleet-wide guard: a burst of refused grants across many connections is an incident, not
that many dead connections.

One ``invalid_grant`` means one grant is gone (revoked, expired) and its connection needs a
person to reconnect it. Many of them at once, across connections of any team and tenant, mean
something else: a wrong client secret deployed (``invalid_client``), Bipsync restoring its
token store, an outage of theirs answering 400 instead of 5xx. Marking thousands of connections
``needs_reconnect`` (and emailing thousands of admins) would turn a fixable incident into
thousands of reconnects, although every refresh token is still good once the cause is fixed.

So every ``invalid_grant``/``invalid_client`` from a token endpoint is counted in Redis (the
distinct connections refused within ``BIPSYNC_GRANT_INCIDENT_WINDOW_SECONDS``). From
``BIPSYNC_GRANT_INCIDENT_THRESHOLD`` on, the guard holds each refusal instead: the connection
stays ``failing`` with its tokens kept and a sentence saying why, and retries after
``BIPSYNC_GRANT_INCIDENT_RETRY_SECONDS`` (with jitter). The operators are alerted once per
incident: an ERROR log line, the ``bipsync_grant_incidents`` metric and an email to
``OPERATOR_EMAILS`` (the app's mail backend, as for the admins' reconnect notices). The connections the same burst marked
``needs_reconnect`` before the threshold was reached get their hold too, and their reconnect
notices are closed. While held connections keep being refused, each retry counts again, so the
incident lasts as long as its cause (the retry is shorter than the window); once the cause is
fixed, their retries succeed and the count drains away, and a refusal after that is judged on its
own again.

When Redis is unreachable the guard cannot count and the token service decides as before.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any, Final
from uuid import UUID

import redis
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from bipsync_partner import coordination
from bipsync_partner.connections.models import Connection, ConnectionEvent
from bipsync_partner.oauth import OAuthError
from bipsync_partner.ops import metrics

log = logging.getLogger(__name__)

#: The answers that, one at a time, mean a grant (or a machine's credentials) is gone.
GRANT_REFUSALS: Final = frozenset({"invalid_grant", "invalid_client"})

# KEYS: refusals (sorted set of connection ids by Redis time), incident (hash).
# ARGV: connection id, window ms, threshold. Returns {0 counted / 1 incident / 2 incident
# started by this refusal, distinct connections refused within the window}.
_REFUSED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], window)
local n = redis.call('ZCARD', KEYS[1])
if n < tonumber(ARGV[3]) then return {0, n} end
local started = redis.call('HSETNX', KEYS[2], 'since', now)
redis.call('PEXPIRE', KEYS[2], window)
return {started + 1, n}
"""


@dataclass(frozen=True)
class Hold:
    """A refusal held for an incident: the sentence to store and when to try again."""

    sentence: str
    retry_in: timedelta


def _refusals_key() -> str:
    return coordination.key("grant-refusals")


def _incident_key() -> str:
    return coordination.key("grant-incident")


@cache
def _script(client: redis.Redis) -> Any:
    return client.register_script(_REFUSED)


def _window() -> timedelta:
    return timedelta(seconds=int(settings.BIPSYNC_GRANT_INCIDENT_WINDOW_SECONDS))


def _retry_in() -> timedelta:
    # Jittered, so that the held connections of a whole fleet do not retry in one sweep.
    seconds = float(settings.BIPSYNC_GRANT_INCIDENT_RETRY_SECONDS)
    return timedelta(seconds=random.uniform(seconds / 2, seconds))


def sentence(error: str, refused: int) -> str:
    minutes = max(1, round(_window().total_seconds() / 60))
    return (
        f"Bipsync refused this connection's tokens ({error}) along with those of {refused - 1} "
        f"other connections within {minutes} minutes, which points to an incident at Bipsync "
        "or a wrong setting of the app rather than to this connection; the app keeps its tokens "
        "and tries again on its own."
    )


def hold(connection: Connection, error: OAuthError) -> Hold | None:
    """Count a refusal from Bipsync's token endpoint; while an incident is on, the hold that
    replaces ``needs_reconnect`` (None: judge the refusal on its own)."""
    if error.transient or error.error not in GRANT_REFUSALS:
        return None
    client = coordination.client()
    args = [str(connection.pk), int(_window().total_seconds() * 1000)]
    args.append(int(settings.BIPSYNC_GRANT_INCIDENT_THRESHOLD))
    try:
        state, refused = (
            int(x)
            for x in _script(client)(
                keys=[_refusals_key(), _incident_key()], args=args, client=client
            )
        )
    except redis.RedisError:
        log.warning("Could not count a refused grant fleet-wide; judging it on its own")
        return None
    if state == 0:
        return None
    held = Hold(sentence(error.error, refused), _retry_in())
    metrics.inc("bipsync_grant_incidents", event="held")
    if state == 2:
        _started(error.error, refused, connection.pk, held.sentence)
    return held


def _started(error: str, refused: int, connection_id: UUID, held: str) -> None:
    window = int(_window().total_seconds())
    subject = f"Bipsync refused the tokens of {refused} connections within {window} s ({error})"
    body = (
        f"{subject}. The app treats this as an incident, not as dead connections: it keeps "
        "their tokens, stops marking them as needing a reconnect and retries them every "
        f"{settings.BIPSYNC_GRANT_INCIDENT_RETRY_SECONDS} s or so.\n\n"
        "Check the client ids and secrets deployed (BIPSYNC_*_CLIENT_ID / _SECRET) and "
        "Bipsync's status; the held connections recover on their own once the cause is fixed."
    )
    log.error("Grant incident: %s; holding the refused connections' tokens for a retry", subject)
    metrics.inc("bipsync_grant_incidents", event="started")
    try:
        if settings.OPERATOR_EMAILS:
            send_mail(subject, body, None, list(settings.OPERATOR_EMAILS))
    except Exception:
        # The operators still have the log line and the metric; a refresh must not fail here.
        log.exception("Could not email the operators about the grant incident")
    # After the refusing connection's own transaction: the burst's earlier refusals are
    # other rows, which must not be locked while this one's lock is held.
    transaction.on_commit(lambda: _hold_earlier(connection_id, held))


def _hold_earlier(connection_id: UUID, held: str) -> None:
    """Give the connections this burst marked ``needs_reconnect`` before the threshold the same
    hold, and close their reconnect notices."""
    from bipsync_partner.connections.notifications import ReconnectNotice

    try:
        since = timezone.now() - _window()
        members = coordination.client().zrange(_refusals_key(), 0, -1)
        ids = [str(m, "ascii") for m in members if isinstance(m, bytes)]
        ids = [pk for pk in ids if pk != str(connection_id)]
    except redis.RedisError:
        log.warning("Could not read the connections refused before the grant incident")
        return
    with transaction.atomic():
        earlier = list(
            Connection.objects.select_for_update(skip_locked=True).filter(
                pk__in=ids,
                status=Connection.Status.NEEDS_RECONNECT,
                last_error_code__in=GRANT_REFUSALS,
                updated__gte=since,
            )
        )
        now = timezone.now()
        for conn in earlier:
            Connection.objects.filter(pk=conn.pk).update(
                status=Connection.Status.FAILING,
                next_retry_at=now + _retry_in(),
                last_error_message=held,
                updated=now,
            )
        ConnectionEvent.objects.bulk_create(
            ConnectionEvent(connection=conn, kind=ConnectionEvent.Kind.REFRESH_FAILED, message=held)
            for conn in earlier
        )
        ReconnectNotice.objects.filter(connection__in=earlier, cleared_at__isnull=True).update(
            cleared_at=now
        )
    if earlier:
        log.warning("Grant incident: %d connections no longer need reconnecting", len(earlier))
