"""What the soak is asked to do, and the timings that follow from the token lifetime.

Production numbers are tuned for Bipsync's one-hour access tokens: beat sweeps every minute,
refreshes start ten minutes before expiry, failures back off from 30 s up to an hour. A soak with
two-minute tokens scales the refresh machinery down by the same ratio, so that a ten-minute run
goes through several rotations of every connection. Two things are kept exactly as production has
them, because they are what a soak should test: the ceiling of a refresh's "queued" marker is 1.5
times the refresh window (900 s against 600 s; the sweep shortens each marker so that a lost
message is queued again before the token lapses), and the HTTP timeout stays 15 s (the network is
not faster because tokens are shorter).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path

from devtools import services


@dataclass(frozen=True)
class Timings:
    """Seconds. Derived from the access token lifetime by :meth:`for_lifetime`."""

    access_lifetime: int
    refresh_window: int
    sweep_interval: int
    backoff_base: int
    backoff_cap: int
    marker_ttl: int
    leeway: int
    breaker_cooldown: int
    http_timeout: int = 15

    @classmethod
    def for_lifetime(cls, lifetime: int) -> Timings:
        window = lifetime // 2
        return cls(
            access_lifetime=lifetime,
            # Refresh when half the token's life is left (production: 600 s of 3600 s, plus
            # a sweep every 60 s; short tokens need proportionally more room for the sweep).
            refresh_window=window,
            sweep_interval=max(2, lifetime // 12),
            backoff_base=max(1, lifetime // 24),
            backoff_cap=max(4, lifetime // 4),
            marker_ttl=max(10, math.ceil(window * 1.5)),
            leeway=max(2, lifetime // 60),
            # The tenant breaker's window and cool-down in proportion (production: 120 s each
            # against 3600 s tokens); within the back-off cap, so the settle time covers it.
            breaker_cooldown=max(2, lifetime // 30),
        )

    @property
    def settle(self) -> int:
        """How long a fault's effect may outlast it: the longest back-off, then one sweep, plus
        a few seconds for the queue. Lateness that starts later than this after every fault
        counts as lateness outside the fault windows."""
        return self.backoff_cap + self.sweep_interval + 5

    def partner_env(self) -> dict[str, str]:
        """Environment for the soak's partner processes (read by :mod:`.settings`)."""
        return {
            "REFRESH_ACCESS_WINDOW_SECONDS": str(self.refresh_window),
            "REFRESH_JITTER_SECONDS": str(self.sweep_interval),
            "REFRESH_QUEUED_TTL_SECONDS": str(self.marker_ttl),
            "BIPSYNC_HTTP_TIMEOUT": str(self.http_timeout),
            "SOAK_SWEEP_INTERVAL_SECONDS": str(self.sweep_interval),
            "SOAK_BACKOFF_BASE_SECONDS": str(self.backoff_base),
            "SOAK_BACKOFF_CAP_SECONDS": str(self.backoff_cap),
            "SOAK_TOKEN_LEEWAY_SECONDS": str(self.leeway),
            "BIPSYNC_BREAKER_WINDOW_SECONDS": str(self.breaker_cooldown),
            "BIPSYNC_BREAKER_COOLDOWN_SECONDS": str(self.breaker_cooldown),
            # Writes: back-off, lease and beat's sweep in the same proportion (production:
            # 2 s to 10 min, a 600 s lease, a sweep every 30 s), the lease above the task's
            # time limit as production keeps it.
            "WRITES_BACKOFF_BASE_MS": str(self.backoff_base * 1000),
            "WRITES_BACKOFF_CAP_MS": str(self.backoff_cap * 1000),
            "WRITES_LEASE_SECONDS": str(self.write_lease),
            "WRITES_TASK_SOFT_TIME_LIMIT": str(self.write_lease - 15),
            "WRITES_TASK_TIME_LIMIT": str(self.write_lease - 10),
            "WRITES_SWEEP_INTERVAL_SECONDS": str(self.sweep_interval),
        }

    @property
    def write_lease(self) -> int:
        return max(30, self.access_lifetime // 2)


@dataclass(frozen=True)
class SoakConfig:
    connections: int = 2000
    minutes: float = 10.0
    web: int = 2
    workers: int = 2
    concurrency: int = 4
    faults: str = "all"
    seed: int = 1
    access_lifetime: int = 120
    tenants: int = 10
    revoke: int = 5
    lost_replies: int = 2
    # Writes of a rotated token pair that fail (their database session is cut before commit).
    db_failures: int = 3
    # Connections that sync every half token lifetime, and documents per tenant at Bipsync.
    syncing: int = 20
    documents: int = 150
    # Notes written (every tenth with an attachment) through the run's faults.
    writes: int = 400
    logs: Path = field(default_factory=lambda: services.VAR / "soak")
    json_path: Path | None = None
    progress: bool = True

    @property
    def seconds(self) -> float:
        return self.minutes * 60.0

    @property
    def timings(self) -> Timings:
        return Timings.for_lifetime(self.access_lifetime)

    @property
    def faults_on(self) -> bool:
        return self.faults == "all"

    def validate(self) -> None:
        problems = []
        if not 1 <= self.connections <= 50_000:
            problems.append("--connections must be from 1 to 50000")
        if not 0.1 <= self.minutes <= 24 * 60:
            problems.append("--minutes must be from 0.1 to 1440")
        if self.web < 1 or self.workers < 1 or self.concurrency < 1:
            problems.append("--web, --workers and --concurrency must be at least 1")
        if self.faults not in ("all", "none"):
            problems.append("--faults must be all or none")
        if not 20 <= self.access_lifetime <= 3600:
            problems.append("--access-lifetime must be from 20 to 3600 seconds")
        if not 1 <= self.tenants <= 100:
            problems.append("--tenants must be from 1 to 100")
        if not 0 <= self.syncing <= self.connections or not 0 <= self.documents <= 10_000:
            problems.append("--syncing must be 0 to --connections, --documents 0 to 10000")
        needed = self.revoke + max(12, self.lost_replies * 2) + 1 if self.faults_on else 1
        if self.connections < needed:
            problems.append(f"with --faults all the soak needs at least {needed} connections")
        if not 0 <= self.writes <= 100_000:
            problems.append("--writes must be from 0 to 100000")
        if problems:
            raise SystemExit("soak: " + "; ".join(problems) + ".")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    default = SoakConfig()
    parser.add_argument("--connections", type=int, default=default.connections)
    parser.add_argument("--minutes", type=float, default=default.minutes)
    parser.add_argument("--web", type=int, default=default.web, help="gunicorn web workers")
    parser.add_argument(
        "--workers", type=int, default=default.workers, help="refresh workers (plus one sync)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=default.concurrency, help="processes per worker"
    )
    parser.add_argument("--faults", choices=("all", "none"), default=default.faults)
    parser.add_argument("--seed", type=int, default=default.seed)
    parser.add_argument(
        "--access-lifetime",
        type=int,
        default=default.access_lifetime,
        help="seconds; the refresh timings scale with it",
    )
    parser.add_argument("--tenants", type=int, default=default.tenants)
    parser.add_argument(
        "--revoke", type=int, default=default.revoke, help="grants revoked at the sandbox"
    )
    parser.add_argument(
        "--lost-replies",
        type=int,
        default=default.lost_replies,
        help="refreshes whose reply the sandbox drops after rotating",
    )
    parser.add_argument(
        "--db-failures",
        type=int,
        default=default.db_failures,
        help="rotated-token writes whose database session is cut before commit",
    )
    parser.add_argument(
        "--syncing",
        type=int,
        default=default.syncing,
        help="connections that sync every half token lifetime",
    )
    parser.add_argument(
        "--documents", type=int, default=default.documents, help="documents per tenant"
    )
    parser.add_argument(
        "--writes",
        type=int,
        default=default.writes,
        help="notes written to Bipsync during the run (every tenth with an attachment)",
    )
    parser.add_argument("--logs", type=Path, default=default.logs, help="folder for the run's logs")
    parser.add_argument("--json", dest="json_path", type=Path, default=None)
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def from_arguments(args: argparse.Namespace) -> SoakConfig:
    config = SoakConfig(
        connections=args.connections,
        minutes=args.minutes,
        web=args.web,
        workers=args.workers,
        concurrency=args.concurrency,
        faults=args.faults,
        seed=args.seed,
        access_lifetime=args.access_lifetime,
        tenants=args.tenants,
        revoke=args.revoke if args.faults == "all" else 0,
        lost_replies=args.lost_replies if args.faults == "all" else 0,
        db_failures=args.db_failures if args.faults == "all" else 0,
        syncing=args.syncing,
        documents=args.documents,
        writes=args.writes,
        logs=args.logs,
        json_path=args.json_path,
        progress=args.progress,
    )
    config.validate()
    return config
