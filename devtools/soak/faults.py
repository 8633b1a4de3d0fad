"""The fault schedule and the thread that applies it.

Faults follow one another (never two at once), each at a fixed fraction of the run, so that every
run of the same length injects the same sequence and the last quarter of the run is quiet: what
happens there shows that the product recovered on its own.

| fault | what it does | window |
|---|---|---|
| token_5xx | the token endpoint answers 503 to every refresh | 7 % of the run |
| worker_kill | SIGKILL to the first refresh worker's process group (and the writes worker's), restart after a pause | until it is back |
| write_faults | a share of the writes' POSTs commit at Bipsync, then answer 502 or lose the answer | 5 % of the run |
| token_slow | every refresh is delayed (10 ms per second of token lifetime) | 7 % of the run |
| token_close | some refreshes get their connection closed before the server reads them | until used up; held up to 3x longer until the first close |
| redis_restart | Redis killed and started empty on the same port | until it answers |
| revoke | a handful of grants revoked at the sandbox (a customer revoking access) | instant |
| postgres_restart | the partner's PostgreSQL stopped as a crash does, down for 2 % of the run, started again (Bipsync's stays up) | until it answers |
| rotation_db_failure | the next few writes of a rotated token pair lose their database session before commit | until used up, at most 6 %; held up to 3x longer until the first failure |
| lost_replies | on one tenant (12 connections), a few refreshes rotate and their replies are dropped | until used up, at most 13 %; held up to 3x longer until the first drop |

Syncs (a few connections sync every half token lifetime) and a signed-in person's page views run
throughout, faults included.

A window's ``scope`` says whose lateness it explains: everyone's, one tenant's, or a list of
connections'.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devtools.soak.config import SoakConfig
from devtools.soak.sandbox import LOSSY_TENANT, SandboxAdmin
from devtools.soak.stack import Stack

log = logging.getLogger(__name__)

KILLED_WORKER = "worker-refresh-1"
#: Killed with it: a write it held is taken over after its lease, looked up by external id first.
KILLED_WRITES_WORKER = "worker-writes"


@dataclass(frozen=True)
class PlannedFault:
    kind: str
    at: float  # seconds after the start of the run
    duration: float  # longest the window stays open
    label: str


@dataclass
class Window:
    kind: str
    label: str
    start: float  # epoch seconds
    end: float | None = None
    tenant: str | None = None  # None: every connection
    connections: frozenset[str] = frozenset()
    detail: dict[str, Any] = field(default_factory=dict)

    def applies_to(self, connection: str, tenant: str) -> bool:
        if self.connections:
            return connection in self.connections
        return self.tenant is None or self.tenant == tenant

    def as_json(self, t0: float) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "start_s": round(self.start - t0, 1),
            "end_s": round((self.end or self.start) - t0, 1),
            "tenant": self.tenant,
            "connections": len(self.connections) or None,
            **self.detail,
        }


def plan(config: SoakConfig) -> list[PlannedFault]:
    if not config.faults_on:
        return []
    total = config.seconds
    lifetime = config.timings.access_lifetime
    slow_ms = lifetime * 10
    faults = [
        PlannedFault("token_5xx", 0.08, 0.07, "token endpoint 503"),
        PlannedFault("worker_kill", 0.18, 0.02, f"SIGKILL {KILLED_WORKER}"),
        PlannedFault("write_faults", 0.20, 0.05, "writes committed, then 502 or no answer"),
        PlannedFault("token_slow", 0.25, 0.07, f"token endpoint +{slow_ms} ms"),
        PlannedFault("token_close", 0.35, 0.05, "token connections closed"),
        PlannedFault("redis_restart", 0.42, 0.0, "Redis restarted empty"),
        PlannedFault("revoke", 0.47, 0.0, f"{config.revoke} grants revoked"),
        PlannedFault("postgres_restart", 0.50, 0.02, "partner PostgreSQL restarted"),
        PlannedFault(
            "rotation_db_failure",
            0.55,
            0.06,
            f"{config.db_failures} rotated-token writes lost their database session",
        ),
        PlannedFault("lost_replies", 0.62, 0.13, f"{config.lost_replies} replies lost"),
    ]
    return [
        PlannedFault(
            f.kind,
            f.at * total,
            max(3.0, f.duration * total) if f.duration else 0.0,
            f.label,
        )
        for f in faults
        if (f.kind != "revoke" or config.revoke)
        and (f.kind != "lost_replies" or config.lost_replies)
        and (f.kind != "rotation_db_failure" or config.db_failures)
        and (f.kind != "write_faults" or config.writes)
    ]


class FaultRunner(threading.Thread):
    """Applies the plan in order from ``t0``; records what actually happened in ``windows``."""

    def __init__(
        self,
        config: SoakConfig,
        stack: Stack,
        admin: SandboxAdmin,
        t0: float,
        *,
        revoked: dict[str, str],
    ) -> None:
        super().__init__(name="soak-faults", daemon=True)
        self.config = config
        self.stack = stack
        self.admin = admin
        self.t0 = t0
        self.revoked = revoked  # connection id -> grant id
        self.planned = plan(config)
        self.windows: list[Window] = []
        self.current: Window | None = None
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def _sleep_until(self, moment: float) -> bool:
        """False when asked to stop."""
        return not self._halt.wait(max(0.0, moment - time.time()))

    def run(self) -> None:
        try:
            for fault in self.planned:
                if not self._sleep_until(self.t0 + fault.at):
                    return
                handler: Callable[[Window, PlannedFault], None] = getattr(self, "_" + fault.kind)
                window = Window(fault.kind, fault.label, start=time.time())
                self.current = window
                self.windows.append(window)
                try:
                    handler(window, fault)
                finally:
                    window.end = time.time()
                    self.current = None
        except BaseException as exc:  # reported by the runner, which ends the soak
            self.error = exc
        finally:
            self._undo()

    def _undo(self) -> None:
        """Leave nothing switched on: faults cleared, the killed worker running again."""
        try:
            self.admin.clear_faults()
        except Exception:
            log.exception("Could not clear the sandbox faults")
        if self.stack.rotation_fault_budget:
            try:
                self.stack.stop_failing_rotation_writes()
            except Exception:
                log.exception("Could not remove the rotation-write fault")
        for name in (KILLED_WORKER, KILLED_WRITES_WORKER):
            worker = self.stack.processes.get(name)
            if worker is not None and not worker.running and not self.stack._closed:
                worker.start()

    def _hold(self, seconds: float, until: Callable[[], bool] | None = None) -> None:
        deadline = time.time() + seconds
        while time.time() < deadline and not self._halt.is_set():
            if until is not None and until():
                return
            self._halt.wait(min(1.0, max(0.0, deadline - time.time())))

    def _hold_until_first(self, fault: PlannedFault, happened: Callable[[], bool]) -> None:
        """A window whose fault has had no effect yet tested nothing: it stays open until the
        first effect, for at most twice its length again."""
        if not happened():
            self._hold(2 * fault.duration, happened)

    def _token_5xx(self, window: Window, fault: PlannedFault) -> None:
        self.admin.set_fault("status", status=503, count=None)
        self._hold(fault.duration)
        self.admin.clear_faults()

    def _token_slow(self, window: Window, fault: PlannedFault) -> None:
        delay = self.config.timings.access_lifetime * 10
        window.detail["delay_ms"] = delay
        self.admin.set_fault("slow", delay_ms=delay, count=None)
        self._hold(fault.duration)
        self.admin.clear_faults()

    def _worker_kill(self, window: Window, fault: PlannedFault) -> None:
        killed = [n for n in (KILLED_WORKER, KILLED_WRITES_WORKER) if n in self.stack.processes]
        for name in killed:
            self.stack.kill_worker(name)
        self._hold(fault.duration)
        for name in killed:
            self.stack.start_worker(name)

    def _write_faults(self, window: Window, fault: PlannedFault) -> None:
        # The requests that are not safe to repeat: a note's creation and an attachment's
        # metadata (POST). Bipsync does the work, then the answer is an error or nothing.
        self.admin.set_fault(
            "status_after",
            target="api",
            method="POST",
            status=502,
            probability=0.15,
            grant_type=None,
        )
        self.admin.set_fault(
            "lose_response", target="api", method="POST", probability=0.15, grant_type=None
        )
        self._hold(fault.duration)
        self.admin.clear_faults()

    def _redis_restart(self, window: Window, fault: PlannedFault) -> None:
        window.detail["down_s"] = round(self.stack.restart_redis(), 2)

    def _used_up(self, fault_id: int) -> Callable[[], bool]:
        def check() -> bool:
            return all(f["id"] != fault_id or f["remaining"] == 0 for f in self.admin.faults())

        return check

    def _remaining(self, fault_id: int) -> int:
        return next((int(f["remaining"]) for f in self.admin.faults() if f["id"] == fault_id), 0)

    def _token_close(self, window: Window, fault: PlannedFault) -> None:
        count = max(5, self.config.connections // 100)
        created = self.admin.set_fault("close", count=count)
        self._hold(fault.duration, self._used_up(created["id"]))
        # A short run can meet a lull between sweeps' batches (a CI run closed nothing in its
        # 3 s).
        self._hold_until_first(fault, lambda: self._remaining(created["id"]) < count)
        window.detail["closed"] = count - self._remaining(created["id"])
        self.admin.clear_faults()

    def _revoke(self, window: Window, fault: PlannedFault) -> None:
        window.connections = frozenset(self.revoked)
        window.detail["revoked_rows"] = self.admin.revoke_grants(list(self.revoked.values()))

    def _lost_replies(self, window: Window, fault: PlannedFault) -> None:
        window.tenant = LOSSY_TENANT
        count = self.config.lost_replies
        created = self.admin.set_fault("lose_response", count=count, tenant=LOSSY_TENANT)
        self._hold(fault.duration, self._used_up(created["id"]))
        self._hold_until_first(fault, lambda: self._remaining(created["id"]) < count)
        window.detail["lost"] = count - self._remaining(created["id"])
        self.admin.clear_faults()

    def _postgres_restart(self, window: Window, fault: PlannedFault) -> None:
        window.detail["down_s"] = round(self.stack.restart_postgres(fault.duration), 2)

    def _rotation_db_failure(self, window: Window, fault: PlannedFault) -> None:
        count = self.config.db_failures
        self.stack.fail_rotation_writes(count)
        try:
            self._hold(fault.duration, lambda: self.stack.rotation_writes_failed() >= count)
            # It follows PostgreSQL's restart: on a loaded machine the sweeps can still be backing
            # off from it for the whole window (a suite run at load 6 failed no write in 3.7 s).
            self._hold_until_first(fault, lambda: self.stack.rotation_writes_failed() > 0)
            window.detail["failed_writes"] = self.stack.rotation_writes_failed()
        finally:
            self.stack.stop_failing_rotation_writes()
