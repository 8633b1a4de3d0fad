"""A circuit breaker per tenant in front of Bipsync's token endpoint, shared through Redis.

Each connection backs off on its own after a transient failure, but a tenant with hundreds of
connections whose token endpoint is down still receives a request from every connection whose
back-off has passed, every minute. After ``BIPSYNC_BREAKER_FAILURES`` transient failures in a
row at one tenant (network errors, timeouts, 5xx, unreadable answers; none more than
``BIPSYNC_BREAKER_WINDOW_SECONDS`` after the previous one), the breaker opens: for
``BIPSYNC_BREAKER_COOLDOWN_SECONDS`` no process calls that tenant's token endpoint, the sweep
puts its batches back on the queue for when the cool-down ends, inline callers get
:class:`~bipsync_partner.connections.tokens.TokenTemporarilyUnavailable` at once (or the
still-valid access token), and the team's pages say "Bipsync acme is failing since …".

When the cool-down is over the breaker is half-open: exactly one request (the probe) may go
out, while the others still wait. Its success closes the breaker; another transient failure
opens it for a new cool-down ("since" stays the time it first opened). Any answer of the
endpoint that is not a transient failure (a token, or ``invalid_grant``) proves it is up and
resets the count. A 429 is neither: the tenant's Retry-After gate (:mod:`bipsync_partner.coordination`) handles it.

State lives in Redis and counts time in Redis's clock (``TIME``), like the other coordination
primitives, so hosts' clocks never matter. When Redis is unreachable the breaker lets calls
through (the per-connection back-off still applies): failing closed would stop every refresh.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Final
from uuid import UUID

import redis
from django.conf import settings
from django.utils import timezone

from bipsync_partner import coordination
from bipsync_partner.oauth import OAuthError
from bipsync_partner.ops import metrics

log = logging.getLogger(__name__)

#: The ``code`` of the TokenTemporarilyUnavailable raised while a tenant's breaker is open.
TENANT_FAILING: Final = "tenant_failing"
#: How soon a caller held back by another process's probe should ask again.
PROBE_WAIT_SECONDS: Final = 5.0

# KEYS: failures, state. ARGV: cool-down ms, probe lease ms.
# Returns {allowed (0 refused, 1 closed, 2 the probe), ms until asking again, since ms, until ms,
# 1 when failures are counted (only then must an answer reset them)}.
_ALLOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[2], 'since', 'until', 'probe')
if not s[2] then return {1, 0, 0, 0, redis.call('EXISTS', KEYS[1])} end
local since, till = tonumber(s[1]), tonumber(s[2])
if now < till then return {0, till - now, since, till, 1} end
local probe = tonumber(s[3] or '0')
if probe > now then return {0, probe - now, since, till, 1} end
redis.call('HSET', KEYS[2], 'probe', now + tonumber(ARGV[2]))
return {2, 0, since, till, 1}
"""

# KEYS: failures, state. ARGV: threshold, window ms, cool-down ms.
# Returns {0 nothing changed, 1 opened, 2 opened again after a failed probe}.
_FAILED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cooldown, window = tonumber(ARGV[3]), tonumber(ARGV[2])
local till = redis.call('HGET', KEYS[2], 'until')
if till then
  if now < tonumber(till) then return 0 end
  redis.call('HSET', KEYS[2], 'until', now + cooldown)
  redis.call('HDEL', KEYS[2], 'probe')
  redis.call('PEXPIRE', KEYS[2], cooldown + window)
  return 2
end
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], window)
if n < tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[2], 'since', now, 'until', now + cooldown)
redis.call('PEXPIRE', KEYS[2], cooldown + window)
return 1
"""

# KEYS: failures, state. Returns 1 when this answer closed the breaker (it was half-open).
_ANSWERED = """
redis.call('DEL', KEYS[1])
local till = redis.call('HGET', KEYS[2], 'until')
if not till then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now < tonumber(till) then return 0 end
redis.call('DEL', KEYS[2])
return 1
"""

# KEYS: state. A probe that ended without an answer (429, an error of ours) lets another probe.
_RELEASE = """
redis.call('HDEL', KEYS[1], 'probe')
return 1
"""


@dataclass(frozen=True)
class Outage:
    """A tenant whose breaker is open: since when, and until when no request goes out."""

    tenant: str
    since: datetime
    until: datetime

    @property
    def sentence(self) -> str:
        return (
            f"Bipsync {self.tenant} is failing since {self.since:%Y-%m-%d %H:%M} UTC; the app "
            f"stopped asking it for tokens for now and tries again on its own after "
            f"{self.until:%H:%M:%S} UTC."
        )


def _failures_key(tenant: str) -> str:
    return coordination.key("tenant", tenant, "breaker", "failures")


def _state_key(tenant: str) -> str:
    return coordination.key("tenant", tenant, "breaker")


def _ms(name: str) -> int:
    return max(1, int(float(getattr(settings, name)) * 1000))


def _probe_lease_ms() -> int:
    # The longest a token exchange can take (the transport's total bound) and a margin: a
    # probe whose process died frees the half-open breaker after that.
    return int((2 * float(settings.BIPSYNC_HTTP_TIMEOUT) + 5) * 1000)


@cache
def _script(client: redis.Redis, source: str) -> Any:
    # EVALSHA with a fallback to EVAL: the script text is not sent with every refresh.
    return client.register_script(source)


def _run(source: str, keys: list[str], args: Iterable[object] = ()) -> Any:
    client = coordination.client()
    return _script(client, source)(keys=keys, args=list(args), client=client)


def _moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class _Refused(Exception):
    def __init__(self, outage: Outage, retry_in: float) -> None:
        super().__init__(outage.sentence)
        self.outage = outage
        self.retry_in = retry_in


@dataclass(frozen=True)
class _Pass:
    """A request let through: as the half-open breaker's probe or not, and whether failures are
    counted (only then must its answer reset them: a healthy tenant costs no second round trip)."""

    probing: bool
    counted: bool


def _allow(tenant: str) -> _Pass:
    """Let a request go to ``tenant`` now, or raise :class:`_Refused` while the breaker is open."""
    keys = [_failures_key(tenant), _state_key(tenant)]
    args = [_ms("BIPSYNC_BREAKER_COOLDOWN_SECONDS"), _probe_lease_ms()]
    try:
        allowed, wait_ms, since, until, counted = (int(x) for x in _run(_ALLOW, keys, args))
    except redis.RedisError:
        log.warning("Could not read the circuit breaker of tenant %s; calling it", tenant)
        return _Pass(probing=False, counted=True)
    if allowed == 0:
        raise _Refused(Outage(tenant, _moment(since), _moment(until)), wait_ms / 1000.0)
    return _Pass(probing=allowed == 2, counted=counted == 1)


def _verdict(error: BaseException | None) -> str:
    """What a request's end says about the endpoint: "failed" (a transient failure),
    "answered" (it answered, even with a refusal), or "neutral" (a 429, or an error of ours)."""
    if error is None:
        return "answered"
    if isinstance(error, OAuthError):
        if not error.transient:
            return "answered"
        if error.status != 429:
            return "failed"
    return "neutral"


def _record(tenant: str, error: BaseException | None, passed: _Pass) -> None:
    keys = [_failures_key(tenant), _state_key(tenant)]
    verdict = _verdict(error)
    try:
        if verdict == "failed":
            args = [
                int(settings.BIPSYNC_BREAKER_FAILURES),
                _ms("BIPSYNC_BREAKER_WINDOW_SECONDS"),
                _ms("BIPSYNC_BREAKER_COOLDOWN_SECONDS"),
            ]
            changed = int(_run(_FAILED, keys, args))
            if changed:
                _opened(tenant, again=changed == 2)
        elif verdict == "answered":
            if passed.counted and int(_run(_ANSWERED, keys)):
                _closed(tenant)
        elif passed.probing:
            _run(_RELEASE, keys[1:])
    except redis.RedisError:
        log.warning("Could not update the circuit breaker of tenant %s", tenant)


def _opened(tenant: str, *, again: bool) -> None:
    cooldown = settings.BIPSYNC_BREAKER_COOLDOWN_SECONDS
    if again:
        log.warning(
            "Bipsync %s still fails after its cool-down; pausing it %s s more", tenant, cooldown
        )
    else:
        log.error(
            "Bipsync %s failed %s times in a row at its token endpoint; no token requests to it "
            "for %s s",
            tenant,
            settings.BIPSYNC_BREAKER_FAILURES,
            cooldown,
        )
    metrics.inc("bipsync_tenant_breaker", event="reopened" if again else "opened")


def _closed(tenant: str) -> None:
    log.warning(
        "Bipsync %s answers its token endpoint again; its circuit breaker is closed", tenant
    )
    metrics.inc("bipsync_tenant_breaker", event="closed")


@contextlib.contextmanager
def calling(tenant: str, connection_id: UUID) -> Iterator[None]:
    """Around one request to ``tenant``'s token endpoint (the token service's): refuses it with
    ``TokenTemporarilyUnavailable`` (code :data:`TENANT_FAILING`, ``retry_at`` when to ask again)
    while the breaker is open, and counts how it ended."""
    from bipsync_partner.connections import tokens

    try:
        passed = _allow(tenant)
    except _Refused as refused:
        metrics.inc("bipsync_tenant_breaker", event="refused")
        retry_in = max(refused.retry_in, 0.0) or PROBE_WAIT_SECONDS
        raise tokens.TokenTemporarilyUnavailable(
            refused.outage.sentence,
            code=TENANT_FAILING,
            connection_id=connection_id,
            retry_at=timezone.now() + timedelta(seconds=retry_in),
        ) from None
    try:
        yield
    except BaseException as error:
        _record(tenant, error, passed)
        raise
    _record(tenant, None, passed)


def retry_in(error: BaseException) -> float | None:
    """Seconds until ``error``'s caller may ask again, if it is the refusal of an open breaker."""
    from bipsync_partner.connections import tokens

    if not isinstance(error, tokens.TokenTemporarilyUnavailable):
        return None
    if error.code != TENANT_FAILING or error.retry_at is None:
        return None
    return max(0.0, (error.retry_at - timezone.now()).total_seconds())


def outages(tenants: Iterable[str]) -> list[Outage]:
    """The tenants among ``tenants`` whose breaker is open or half-open, in one round trip."""
    names = sorted(set(tenants))
    if not names:
        return []
    try:
        pipe = coordination.client().pipeline(transaction=False)
        for tenant in names:
            pipe.hmget(_state_key(tenant), "since", "until")
        states = pipe.execute()
    except redis.RedisError:
        log.warning("Could not read the circuit breakers of %d tenants", len(names))
        return []
    return [
        Outage(tenant, _moment(int(since)), _moment(int(until)))
        for tenant, (since, until) in zip(names, states, strict=True)
        if since is not None and until is not None
    ]
