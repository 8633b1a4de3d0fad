"""The soak command: set up, run for the configured time with a live progress line, report,
and clean up whatever happens (Ctrl-C and SIGTERM included)."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any, TextIO

from devtools.soak.config import SoakConfig
from devtools.soak.faults import FaultRunner
from devtools.soak.report import Report
from devtools.soak.sampler import Sampler
from devtools.soak.sandbox import SandboxAdmin, choose_revocations
from devtools.soak.stack import Stack
from devtools.soak.visitor import Visitor
from devtools.soak.writes import drain, feed_plan


class Progress:
    """One line, rewritten in place on a terminal, printed every ten seconds otherwise."""

    def __init__(self, out: TextIO, enabled: bool) -> None:
        self.out = out
        self.enabled = enabled
        self.tty = out.isatty()
        self._last = 0.0

    def say(self, message: str) -> None:
        if self.enabled:
            self.out.write(("\n" if self.tty and self._last else "") + f"==> soak: {message}\n")
            self.out.flush()
            self._last = 0.0

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.out.write("\r" + text[:160].ljust(160))
            self.out.flush()
            self._last = time.monotonic()
        elif time.monotonic() - self._last >= 10:
            self.out.write(text + "\n")
            self.out.flush()
            self._last = time.monotonic()

    def end_line(self) -> None:
        if self.enabled and self.tty and self._last:
            self.out.write("\n")
            self._last = 0.0


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the soak like Ctrl-C does: through the clean-up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _status_line(elapsed: float, total: float, sampler: Sampler, faults: FaultRunner) -> str:
    counts = sampler.status_counts
    partner = sampler.partner_metrics.totals
    sandbox = sampler.sandbox_refreshes
    failures = sum(v for k, v in sandbox.items() if k != "ok")
    fault = faults.current.label if faults.current is not None else "none"
    return (
        f"{elapsed:5.0f}/{total:.0f} s | refreshes {sandbox.get('ok', 0)} "
        f"(partner {partner.get('refreshed', 0)}) | failures {failures} | "
        f"active {counts.get('active', 0)} failing {counts.get('failing', 0)} "
        f"needs_reconnect {counts.get('needs_reconnect', 0)} | "
        f"expired now {sampler.longest_open:.0f} s | fault: {fault}"
    )


def run(config: SoakConfig, out: TextIO = sys.stderr) -> Report:
    progress = Progress(out, config.progress)
    logs = config.logs / time.strftime("%Y%m%d-%H%M%S")
    logs.mkdir(parents=True, exist_ok=True)
    stack = Stack(config, logs)
    admin: SandboxAdmin | None = None
    sampler: Sampler | None = None
    faults: FaultRunner | None = None
    visitor: Visitor | None = None
    with sigterm_as_interrupt():
        try:
            setup_started = time.monotonic()
            progress.say(f"logs in {logs}; starting PostgreSQL and Redis on spare ports")
            stack.start_servers()
            progress.say("migrating the partner app; the sandbox migrates and starts")
            stack.start_sandbox()
            stack.migrate_partner()
            stack.wait_until_ready()
            admin = SandboxAdmin(stack.sandbox_url, stack.admin_key)
            world = admin.build_world(
                config,
                user_secret=stack.user_secret,
                service_secret=stack.service_secret,
                redirect_uri=stack.web_url + "/connections/callback/",
            )
            plan_path = logs / "plan.json"
            plan_path.write_text(json.dumps(world.plan))
            # The product's processes boot while the connections are stored (booting is mostly
            # imports; the first sweep simply finds what is there by then).
            progress.say(
                f"starting web x{config.web}, {config.workers} refresh workers, a sync worker "
                f"and beat; minting {config.connections} grants and storing the connections"
            )
            stack.start_product()
            seeded: dict[str, Any] = json.loads(stack.partner_step("seed", "seed", str(plan_path)))
            manifest: list[dict[str, Any]] = seeded["connections"]
            (logs / "manifest.json").write_text(json.dumps(manifest))
            visitor = Visitor(
                stack.web_url,
                stack.web_email,
                stack.web_password,
                seeded["web"]["team"],
                seeded["web"]["connection"],
            )
            grant_of = {m["connection"]: m["grant"] for m in manifest}
            revoked = {
                c: grant_of[c] for c in choose_revocations(manifest, config.revoke, config.seed)
            }
            stack.wait_until_ready()
            setup_seconds = time.monotonic() - setup_started

            sampler = Sampler(stack.partner_database_url, stack.web_url, admin)
            t0 = time.time()
            faults = FaultRunner(config, stack, admin, t0, revoked=revoked)
            faults.start()
            if config.writes:
                plan = feed_plan(config, manifest, world.plan, set(revoked), t0, logs)
                stack.start_feed(plan)
            progress.say(f"running for {config.seconds:.0f} s (faults: {config.faults})")
            deadline = t0 + config.seconds
            crashes: list[dict[str, Any]] = []
            # Bounded: one iteration a second until the deadline.
            for _ in range(int(config.seconds) + 2):
                now = time.time()
                if now >= deadline:
                    break
                sampler.sample(now)
                sampler.probe_web()
                visitor.visit()
                sampler.scrape()
                for crash in stack.supervise():
                    at_s = round(crash.pop("at") - t0, 1)
                    crashes.append({**crash, "at_s": at_s})
                    progress.say(f"{crash['process']} exited ({crash['exit']}); restarted it")
                if faults.error is not None:
                    raise RuntimeError(f"the fault schedule failed: {faults.error!r}")
                progress.line(_status_line(now - t0, config.seconds, sampler, faults))
                time.sleep(max(0.0, min(1.0 - (time.time() - now), deadline - time.time())))
            faults.stop()
            faults.join(timeout=60)
            t_end = time.time()
            sampler.sample(t_end)
            sampler.close_open_gaps(t_end)
            sampler.scrape(force=True)
            progress.end_line()
            drain_s = 0.0
            if config.writes:
                progress.say("waiting for the last writes to be delivered")
                drain_s = drain(
                    stack.partner_database_url,
                    max(120.0, 4.0 * config.timings.backoff_cap),
                    lambda left: progress.line(f"writes pending: {left}"),
                )
                progress.end_line()
            progress.say("stopping beat and workers, then checking every stored refresh token")
            stack.stop_product()
            sampler.sandbox_refreshes = admin.refresh_counters()
            verification = json.loads(stack.partner_step("verify", "verify"))
            # Kept beside the report: what each connection ended as, at the partner and at the
            # sandbox, so that a failed soak can be traced connection by connection afterwards.
            (logs / "verification.json").write_text(json.dumps(verification, indent=1))
            writes = None
            if config.writes:
                committed = str(logs / "writes-committed.json")
                writes = {**json.loads(stack.writes_step("verify", committed)), "drain_s": drain_s}
            report = Report(
                config=config,
                t0=t0,
                t_end=t_end,
                windows=faults.windows,
                sampler=sampler,
                manifest=manifest,
                revoked=revoked,
                verification=verification,
                setup_seconds=setup_seconds,
                stack=stack.description(),
                crashes=crashes,
                answers=visitor.answers,
                writes=writes,
            ).compute()
            report.write_json(config.json_path or logs / "report.json")
            if config.progress:
                out.write(report.table() + "\n")
                out.flush()
            return report
        finally:
            # Each step on its own: nothing that fails here may keep stack.close() from running
            # (a failed join once left a whole stack running after the soak had ended).
            for step in (
                progress.end_line,
                faults.stop if faults is not None else None,
                (lambda: faults.join(timeout=30)) if faults is not None else None,
                sampler.close if sampler is not None else None,
                visitor.close if visitor is not None else None,
                admin.close if admin is not None else None,
            ):
                if step is not None:
                    with contextlib.suppress(Exception):
                        step()
            stack.close()


def main(config: SoakConfig) -> int:
    """Exit status: 0 accepted, 1 the acceptance failed, 2 the soak itself could not run."""
    try:
        report = run(config)
    except KeyboardInterrupt:
        sys.stderr.write("\nsoak: interrupted; every process was stopped and the data deleted.\n")
        return 130
    except Exception as exc:
        sys.stderr.write(f"\nsoak: could not complete: {exc}\n")
        return 2
    return 0 if report.accepted else 1
