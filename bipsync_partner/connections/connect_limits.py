"""How often "Connect Bipsync" may be clicked, and how many authorizations may wait at once.

Every Connect asks the tenant's metadata of Bipsync and stores a pending authorization, so a
script (or a stuck key) could otherwise make this app hammer Bipsync and fill a table. Two
bounds, each per user and per team (settings, defaults in ``settings.py``):

- **rate**: at most ``CONNECT_RATE_LIMIT_PER_USER`` / ``…_PER_TEAM`` attempts in a window of
  ``CONNECT_RATE_LIMIT_WINDOW_SECONDS``, counted in Redis so that every web process shares the
  count. The window starts with the first attempt and Redis counts it down, so no clock is
  compared between hosts; its time to live is the ``Retry-After`` of the 429.
- **waiting**: at most ``CONNECT_PENDING_LIMIT_PER_USER`` / ``…_PER_TEAM`` pending authorizations
  that are neither used nor expired, counted in PostgreSQL. This is the bound on stored rows;
  when Redis cannot be reached the rate is not enforced (Connect keeps working) and this bound
  still holds. Counting and inserting are two statements, so parallel clicks may pass it by the
  number of web threads at most, which the rate bound keeps small.
"""

from __future__ import annotations

import logging

import redis
from django.conf import settings
from django.utils import timezone

from accounts.models import Membership, User
from bipsync_partner import coordination
from bipsync_partner.connections.connect_errors import ConnectError
from bipsync_partner.connections.pending import PendingAuthorizationRecord, pending_lifetime

log = logging.getLogger(__name__)


class TooManyConnects(ConnectError):
    """A 429 with the seconds after which trying again can succeed."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, status=429, code="too_many_requests")
        self.retry_after = max(1, retry_after)


def check(user: User, membership: Membership) -> None:
    """Count this attempt; raise :class:`TooManyConnects` when it is over a bound."""
    _check_rate(user, membership)
    _check_waiting(user, membership)


def _minutes(seconds: int) -> str:
    minutes = max(1, -(-seconds // 60))
    return "a minute" if minutes == 1 else f"{minutes} minutes"


def _attempts(scope: str, ident: object, window: int) -> tuple[int, int]:
    """This window's attempts of ``scope``/``ident`` including this one, and the seconds left."""
    name = coordination.key("connect-rate", scope, ident)
    with coordination.client().pipeline(transaction=True) as pipe:
        pipe.set(name, 0, ex=window, nx=True)
        pipe.incr(name)
        pipe.ttl(name)
        _, count, ttl = pipe.execute()
    return int(count), int(ttl) if int(ttl) > 0 else window


def _check_rate(user: User, membership: Membership) -> None:
    window = int(settings.CONNECT_RATE_LIMIT_WINDOW_SECONDS)
    bounds = [
        ("user", user.pk, int(settings.CONNECT_RATE_LIMIT_PER_USER), "You have"),
        ("team", membership.team_id, int(settings.CONNECT_RATE_LIMIT_PER_TEAM), "Your team has"),
    ]
    for scope, ident, limit, who in bounds:
        try:
            count, left = _attempts(scope, ident, window)
        except redis.RedisError as exc:
            # The waiting bound below still caps what can be stored.
            log.warning("Connect rate not enforced, Redis is unavailable (%s)", type(exc).__name__)
            return
        if count > limit:
            raise TooManyConnects(
                f"{who} started {limit} connections to Bipsync in a short time, the most this "
                f"app allows. Try again in {_minutes(left)}.",
                retry_after=left,
            )


def _check_waiting(user: User, membership: Membership) -> None:
    now = timezone.now()
    waiting = PendingAuthorizationRecord.objects.filter(used_at__isnull=True, expires_at__gt=now)
    lifetime = int(pending_lifetime().total_seconds())
    bounds = [
        (waiting.filter(user=user), int(settings.CONNECT_PENDING_LIMIT_PER_USER), "You have"),
        (
            waiting.filter(team_id=membership.team_id),
            int(settings.CONNECT_PENDING_LIMIT_PER_TEAM),
            "Your team has",
        ),
    ]
    for rows, limit, who in bounds:
        if rows.count() >= limit:
            oldest = rows.order_by("expires_at").values_list("expires_at", flat=True).first()
            left = int((oldest - now).total_seconds()) if oldest else lifetime
            raise TooManyConnects(
                f"{who} {limit} connections to Bipsync started and not finished, the most this "
                "app allows at once. Finish one at Bipsync, or try again in "
                f"{_minutes(left)} when the oldest has expired.",
                retry_after=left,
            )
