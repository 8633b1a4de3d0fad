"""Read-only sampling of the running product: once a second, one SELECT of every connection's
status, expiry and version; every few seconds, the partner's /metrics and the sandbox's counters.

Time without a valid access token is measured per connection: when a sample shows a new version
(a rotation was stored) and the row was written after the previous access token's expiry, the
connection went without a valid token from that expiry to that write. A connection whose token
has expired and has not been refreshed yet is an open gap, closed at the end of the run. With a
one-second sample, two rotations between samples show as one, which can only make a gap look
longer, never shorter.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import psycopg

from devtools.soak.sandbox import SandboxAdmin

USABLE = ("active", "failing")
_SAMPLE_SQL = (
    "SELECT id::text, tenant, status, access_expires_at, updated, version "
    "FROM connections_connection"
)
_METRIC_RE = re.compile(r'^bipsync_token_refreshes_total\{outcome="([^"]*)"\} ([0-9.e+]+)$')


def _epoch(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


@dataclass
class Gap:
    connection: str
    tenant: str
    start: float
    end: float
    open: bool = False

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass
class Row:
    tenant: str
    status: str
    expires: float | None
    version: int


class ResettingCounters:
    """Counters read from a source that may restart from zero (the partner's metrics live in
    Redis, which the soak restarts empty): a drop adds the last value seen to a base."""

    def __init__(self) -> None:
        self.base: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.resets = 0

    def update(self, values: dict[str, float]) -> None:
        if any(values.get(k, 0.0) < v for k, v in self.last.items()):
            self.resets += 1
            for key, value in self.last.items():
                self.base[key] = self.base.get(key, 0.0) + value
            self.last = {}
        self.last.update(values)

    @property
    def totals(self) -> dict[str, int]:
        keys = self.base.keys() | self.last.keys()
        return {k: round(self.base.get(k, 0.0) + self.last.get(k, 0.0)) for k in sorted(keys)}


@dataclass
class Sampler:
    database_url: str
    web_url: str
    admin: SandboxAdmin
    rows: dict[str, Row] = field(default_factory=dict)
    gaps: list[Gap] = field(default_factory=list)
    samples: int = 0
    sample_ms_max: float = 0.0
    status_counts: dict[str, int] = field(default_factory=dict)
    longest_open: float = 0.0
    partner_metrics: ResettingCounters = field(default_factory=ResettingCounters)
    sandbox_refreshes: dict[str, int] = field(default_factory=dict)
    scrape_errors: int = 0
    sample_errors: int = 0
    # The web processes' readiness (/readyz: database, Redis, broker), probed with each sample.
    readiness: dict[str, int] = field(default_factory=dict)
    # The machine's 1-minute load average at each sample: the soak shares its cores with
    # whatever else runs, and its figures mean little without this.
    load: list[float] = field(default_factory=list)
    _conn: psycopg.Connection[tuple[object, ...]] | None = None
    _last_scrape: float = 0.0

    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=5)
            # Read-only by construction, and bounded: a sample never waits long for anything.
            self._conn.execute("SET default_transaction_read_only = on")
            self._conn.execute("SET statement_timeout = '5s'")
        return self._conn

    def sample(self, now: float | None = None) -> None:
        started = time.monotonic()
        try:
            rows = self._connection().execute(_SAMPLE_SQL).fetchall()
        except psycopg.OperationalError:
            # The partner's PostgreSQL is restarting (a fault): no sample this second. A gap
            # that spans it is measured from the samples on either side.
            self.sample_errors += 1
            if self._conn is not None:
                self._conn.close()
            return
        now = now or time.time()
        counts: dict[str, int] = {}
        longest = 0.0
        for raw in rows:
            conn_id, tenant, status = str(raw[0]), str(raw[1]), str(raw[2])
            expires_at, updated, version = raw[3], raw[4], int(str(raw[5]))
            expires = _epoch(expires_at) if isinstance(expires_at, datetime) else None
            written = _epoch(updated) if isinstance(updated, datetime) else now
            previous = self.rows.get(conn_id)
            if (
                previous is not None
                and version != previous.version
                and previous.expires is not None
                and written is not None
                and written > previous.expires
            ):
                self.gaps.append(Gap(conn_id, tenant, previous.expires, written))
            self.rows[conn_id] = Row(tenant, status, expires, version)
            counts[status] = counts.get(status, 0) + 1
            if status in USABLE and expires is not None and expires < now:
                longest = max(longest, now - expires)
        self.samples += 1
        self.load.append(os.getloadavg()[0])
        self.status_counts = counts
        self.longest_open = longest
        self.sample_ms_max = max(self.sample_ms_max, (time.monotonic() - started) * 1000)

    def scrape(self, every: float = 5.0, *, force: bool = False) -> None:
        """The partner's refresh counters (/metrics) and the sandbox's, at most every ``every`` s."""
        if not force and time.monotonic() - self._last_scrape < every:
            return
        self._last_scrape = time.monotonic()
        try:
            text = httpx.get(self.web_url + "/metrics", timeout=5).text
            values = {}
            for line in text.splitlines():
                match = _METRIC_RE.match(line)
                if match:
                    values[match.group(1)] = float(match.group(2))
            self.partner_metrics.update(values)
            self.sandbox_refreshes = self.admin.refresh_counters()
        except (httpx.HTTPError, RuntimeError, ValueError):
            # A scrape during the Redis restart may fail; the next one catches up.
            self.scrape_errors += 1

    def probe_web(self) -> None:
        """One readiness probe, as a load balancer would send (bounded by a 2 s timeout)."""
        try:
            status = str(httpx.get(self.web_url + "/readyz", timeout=2).status_code)
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        self.readiness[status] = self.readiness.get(status, 0) + 1

    def close_open_gaps(self, now: float) -> None:
        """End of the run: every usable connection whose token has expired is a gap until now."""
        for conn_id, row in self.rows.items():
            if row.status in USABLE and row.expires is not None and row.expires < now:
                self.gaps.append(Gap(conn_id, row.tenant, row.expires, now, open=True))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
