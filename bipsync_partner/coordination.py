"""Coordination between every web process and worker that talks to Bipsync, kept in Redis: the
one home of the primitives both apps use (connections for refreshes, sync for runs and pages).

Three small primitives, each one atomic in Redis so that it holds across processes and hosts:

- :class:`TenantGate`: a per-tenant "not before". When Bipsync answers 429 with ``Retry-After``
  (docs/bipsync.md, "Errors": rate limits exist, the sandbox answers 429 with Retry-After and
  clients must honour it), the worker that saw it closes the gate for that long, and every other
  worker checks the gate before it calls the same tenant. The gate is a key whose time to live is
  the wait, so no clock is compared between hosts: Redis counts down.
- :class:`TenantSemaphore`: at most N holders per tenant at once (a sorted set of leases scored
  by their expiry in Redis time). A holder that dies frees its slot when its lease runs out.
- :class:`OnceKeys`: "queue this once" markers (``SET NX`` with a time to live), released when the
  work ends. A crashed worker's marker expires, so nothing stays blocked for ever.

Keys start with ``settings.COORDINATION_KEY_PREFIX`` so that test sessions and deployments
sharing a Redis server stay apart.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from functools import cache

import redis
from django.conf import settings

log = logging.getLogger(__name__)


@cache
def _client(url: str) -> redis.Redis:
    # redis-py's pool notices a fork and reconnects, so one client per process is safe under
    # Celery's prefork pool.
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def client() -> redis.Redis:
    return _client(settings.REDIS_URL)


def key(*parts: object) -> str:
    return ":".join([settings.COORDINATION_KEY_PREFIX, *(str(p) for p in parts)])


# Extend the key's life only if the new wait ends later than the current one: a short
# Retry-After from one worker must not shorten a longer one seen by another.
_DEFER = """
local current = redis.call('PTTL', KEYS[1])
local wanted = tonumber(ARGV[1])
if current < wanted then
  redis.call('SET', KEYS[1], '1', 'PX', wanted)
  return wanted
end
return current
"""


class TenantGate:
    """A per-tenant "not before" shared by every process (RFC 9110 §10.2.3 Retry-After)."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self._key = key("tenant", tenant, "not-before")

    def remaining(self) -> float:
        """Seconds until calls to this tenant may resume; 0.0 when the gate is open."""
        try:
            ms = int(client().pttl(self._key))
        except redis.RedisError:
            # Failing open: a missing gate means at worst one more 429 from Bipsync, which
            # closes it again; failing closed would stop every sync while Redis is away.
            log.warning("Could not read the rate-limit gate of tenant %s", self.tenant)
            return 0.0
        return ms / 1000.0 if ms > 0 else 0.0

    def defer(self, seconds: float) -> float:
        """Close the gate for ``seconds`` (never shortening an existing wait); return the wait."""
        ms = max(1, int(seconds * 1000))
        try:
            result = client().eval(_DEFER, 1, self._key, ms)
        except redis.RedisError:
            log.warning("Could not record a rate limit for tenant %s", self.tenant)
            return seconds
        log.info("Tenant %s asked us to wait %.1f s", self.tenant, seconds)
        return int(result) / 1000.0


# Leases are scored by their expiry in Redis's own clock (TIME), so hosts' clocks never matter.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
  end
  return 1
end
return 0
"""


class TenantSemaphore:
    """At most ``limit`` concurrent holders per tenant and purpose, each with a lease.

    Use ``acquire()`` / ``release()``; ``renew()`` keeps a long holder (a sync run) alive.
    """

    def __init__(self, purpose: str, tenant: str, *, limit: int, lease_seconds: float) -> None:
        self.tenant = tenant
        self.limit = limit
        self.lease_ms = max(1000, int(lease_seconds * 1000))
        self._key = key("tenant", tenant, "slots", purpose)
        self.holder: str | None = None

    def acquire(self) -> bool:
        holder = uuid.uuid4().hex
        try:
            got = client().eval(_ACQUIRE, 1, self._key, self.limit, self.lease_ms, holder)
        except redis.RedisError:
            # Failing open here would let an outage multiply load on a tenant; failing closed
            # only delays work, which is retried.
            log.warning("Could not take a concurrency slot for tenant %s", self.tenant)
            return False
        if int(got) == 1:
            self.holder = holder
            return True
        return False

    def renew(self) -> bool:
        if self.holder is None:
            return False
        try:
            return int(client().eval(_RENEW, 1, self._key, self.lease_ms, self.holder)) == 1
        except redis.RedisError:
            log.warning("Could not renew a concurrency slot for tenant %s", self.tenant)
            return False

    def release(self) -> None:
        if self.holder is None:
            return
        try:
            client().zrem(self._key, self.holder)
        except redis.RedisError:
            # The lease expires by itself; nothing is lost but a little concurrency.
            log.warning("Could not release a concurrency slot for tenant %s", self.tenant)
        self.holder = None


class OnceKeys:
    """``SET NX`` markers: claim many at once in one round trip, release one when work ends."""

    def __init__(self, purpose: str, *, ttl_seconds: int) -> None:
        self.purpose = purpose
        self.ttl = max(1, ttl_seconds)

    def name(self, *parts: object) -> str:
        return key("once", self.purpose, *parts)

    def claim_many(self, names: Sequence[str], ttls: Sequence[int] | None = None) -> list[bool]:
        """Claim each name; True where this caller got it (nobody else holds it). ``ttls``
        shortens the life of each marker below the default (never lengthens it)."""
        if not names:
            return []
        pipe = client().pipeline(transaction=False)
        for index, name in enumerate(names):
            ttl = self.ttl if ttls is None else max(1, min(self.ttl, ttls[index]))
            pipe.set(name, "1", nx=True, ex=ttl)
        return [bool(result) for result in pipe.execute()]

    def claim(self, name: str) -> bool:
        return self.claim_many([name])[0]

    def held(self, name: str) -> bool:
        return bool(client().exists(name))

    def release(self, names: Iterable[str]) -> None:
        names = list(names)
        if not names:
            return
        try:
            client().delete(*names)
        except redis.RedisError:
            log.warning(
                "Could not release %d %s markers; they expire by themselves",
                len(names),
                self.purpose,
            )
