"""The soak's figures, its verdict, and how they are shown (a table) and kept (JSON).

Acceptance: zero connections lost other than those the sandbox deliberately revoked,
and every connection refreshed on time outside the fault windows.

- *Lost*: a connection that ended ``needs_reconnect``, or whose stored refresh token is not the
  live one of its grant at the sandbox, other than the deliberately revoked ones and those *lost
  in flight*: Bipsync rotates the refresh token on every refresh and revokes the old one [doc],
  so a refresh the server completed whose reply no partner process received (the worker was
  SIGKILLed mid-request, or the sandbox dropped the reply on purpose) leaves the partner with a
  dead token, and no client can prevent that. Such a connection is recognised from the sandbox's
  own record (its stored refresh token was "rotated" at a moment a fault was dropping replies);
  they are counted separately, and every rotation the sandbox made must be either stored by the
  partner or one of them, a deliberately revoked connection's included ("unaccounted rotations"
  must be zero).
  A rotation whose reply did arrive but whose storing failed because the partner's database
  failed right after it (the ``rotation_db_failure`` and ``postgres_restart`` windows) is not
  excused: the partner had the new pair in hand and could have kept it. Such connections count as
  lost, and are also shown on their own (``lost_to_database_failure``).
- *On time*: no connection went without a valid access token outside the fault windows. A window
  covers its fault plus a settle time (the longest back-off, one sweep, five seconds); a gap that
  starts inside a window and lasts beyond it counts beyond it as outside.
- *Documents*: Bipsync's research does not change during the run, so no synced document may end
  marked deleted.
- *Pages*: the signed-in visitor's pages answered no 5xx outside the database outage (the
  ``postgres_restart`` window and ``DATABASE_SETTLE`` seconds after it; a page is inside when it
  was in flight at any moment of that span), and inside it nothing but a 503 that says why in a
  sentence.
- *Writes*: every note the feed committed is at the sandbox once, its attachments too, with no
  duplicate; a write may still wait only on a connection whose loss is excused above (its
  deliverer waits for a person to reconnect it).
- *Processes*: no product process exited by itself (the soak restarts one that does, as a
  supervisor would, and lists it).
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from devtools.soak.config import SoakConfig
from devtools.soak.faults import Window
from devtools.soak.sampler import Gap, Sampler
from devtools.soak.visitor import Answer

# Seconds after PostgreSQL is back during which a page may still find a dead connection (each
# web process notices it on its next request and connects again).
DATABASE_SETTLE = 10.0
# Fault windows in which a rotation that reached the partner could fail to be stored.
DATABASE_FAULTS = ("rotation_db_failure", "postgres_restart")

# Words of the token service's sentence for a refresh token lost with a dropped reply.
LOST_REPLY_WORDS = "reply never arrived"
# Partner refresh outcomes that are not failures.
NOT_FAILURES = frozenset(
    {"refreshed", "not_due", "already_rotated", "gone", "skipped", "in_progress", "backing_off"}
)


def _covered_overlap(gap: Gap, spans: list[tuple[float, float]]) -> float:
    """Seconds of ``gap`` inside the union of ``spans``."""
    inside, cursor = 0.0, gap.start
    for start, end in sorted(spans):
        start, end = max(start, cursor), min(end, gap.end)
        if end > start:
            inside += end - start
            cursor = end
    return inside


@dataclass
class Report:
    config: SoakConfig
    t0: float
    t_end: float
    windows: list[Window]
    sampler: Sampler
    manifest: list[dict[str, Any]]
    revoked: dict[str, str]
    verification: dict[str, Any]
    setup_seconds: float
    stack: dict[str, Any] = field(default_factory=dict)
    crashes: list[dict[str, Any]] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    #: The writes' check after they drained (devtools.soak.partner_writes.verify); None: no writes.
    writes: dict[str, Any] | None = None

    def compute(self) -> Report:
        config, timings = self.config, self.config.timings
        connections: dict[str, dict[str, Any]] = self.verification["connections"]
        tenant_of = {m["connection"]: m["tenant"] for m in self.manifest}
        revoke_window = next((w for w in self.windows if w.kind == "revoke"), None)
        revoked = set(self.revoked) if revoke_window is not None else set()

        # Rotations whose reply no live partner process received: the sandbox's stored-token
        # record says "rotated" at a moment a fault was dropping replies. Every one counts
        # against the sandbox's rotations, a revoked connection's too (its grant may have been
        # revoked by the old token's reuse before the revoke window came, which then finds
        # nothing to revoke); only the others are excused as lost in flight.
        rotated_in_flight: dict[str, float] = {}
        for conn_id, state in connections.items():
            when = self._rotated_in_flight(conn_id, tenant_of.get(conn_id, ""), state)
            if when is not None:
                rotated_in_flight[conn_id] = when
        in_flight = {c: when for c, when in rotated_in_flight.items() if c not in revoked}
        lost: dict[str, str] = {}
        database_lost: dict[str, float] = {}
        for conn_id, state in connections.items():
            if conn_id in revoked or conn_id in in_flight:
                continue
            when = self._rotated_during(conn_id, tenant_of.get(conn_id, ""), state, DATABASE_FAULTS)
            if when is not None:
                database_lost[conn_id] = when
                lost[conn_id] = (
                    "rotated at Bipsync, then not stored: the partner's database failed right "
                    f"after the rotation ({state['status']})"
                )
            elif state["status"] == "needs_reconnect":
                lost[conn_id] = f"needs_reconnect ({state['code']}): {state['message']}"
            elif not state["has_refresh_token"]:
                lost[conn_id] = "no refresh token stored"
            elif not state["refresh_active"]:
                reason = state.get("refresh_reason") or "unknown or expired"
                lost[conn_id] = f"stored refresh token is not live at the sandbox ({reason})"

        # Time without a valid access token, inside and outside the fault windows.
        inside_max = outside_max = 0.0
        late: list[dict[str, Any]] = []
        excluded_gaps = 0
        for gap in self.sampler.gaps:
            if (
                gap.connection in revoked and revoke_window and gap.start >= revoke_window.start
            ) or (gap.connection in in_flight and gap.start >= in_flight[gap.connection]):
                excluded_gaps += 1
                continue
            spans = [
                (w.start, (w.end or w.start) + timings.settle)
                for w in self.windows
                if w.applies_to(gap.connection, gap.tenant)
            ]
            inside = _covered_overlap(gap, spans)
            outside = gap.seconds - inside
            inside_max = max(inside_max, inside)
            if outside > 0.0:
                outside_max = max(outside_max, outside)
                late.append(
                    {
                        "connection": gap.connection,
                        "tenant": gap.tenant,
                        "expired_at_s": round(gap.start - self.t0, 1),
                        "seconds": round(gap.seconds, 1),
                        "outside_seconds": round(outside, 1),
                        "still_open": gap.open,
                    }
                )

        statuses: dict[str, int] = {}
        for state in connections.values():
            statuses[state["status"]] = statuses.get(state["status"], 0) + 1
        stored_rotations = sum(int(state["version"]) - 1 for state in connections.values())
        sandbox = self.sampler.sandbox_refreshes
        partner = self.sampler.partner_metrics.totals
        dropped = sum(int(w.detail.get("lost", 0)) for w in self.windows)
        told_lost_reply = sum(1 for c in in_flight if LOST_REPLY_WORDS in connections[c]["message"])
        revoked_detected = sum(
            1 for c in revoked if connections.get(c, {}).get("status") == "needs_reconnect"
        )
        unaccounted = sandbox.get("ok", 0) - stored_rotations - len(rotated_in_flight)
        unaccounted_by_connection = self._unaccounted_by_connection(rotated_in_flight, revoked)
        sync = dict(self.verification.get("sync", {}))
        sync["documents_wrongly_deleted"] = int(sync.get("documents_deleted", 0))
        pages = self._pages()
        writes = self._writes(revoked | set(in_flight))
        accepted = (
            not lost
            and not late
            and unaccounted == 0
            and sync["documents_wrongly_deleted"] == 0
            and pages["server_errors_outside_database_outage"] == 0
            and pages["inside_database_outage"]["other_server_errors"] == 0
            and not self.crashes
            and (
                writes is None
                or (
                    writes["duplicates"] == 0
                    and writes["lost"] == 0
                    and not writes["waiting_for_reconnect_not_excused"]
                )
            )
        )
        load = self.sampler.load
        self.figures = {
            "accepted": accepted,
            "run": {
                "connections": config.connections,
                "minutes": config.minutes,
                "seconds_run": round(self.t_end - self.t0, 1),
                "setup_seconds": round(self.setup_seconds, 1),
                "web_workers": config.web,
                "refresh_workers": config.workers,
                "concurrency": config.concurrency,
                "faults": config.faults,
                "seed": config.seed,
                "tenants": config.tenants,
                "timings": {
                    "access_lifetime_s": timings.access_lifetime,
                    "refresh_window_s": timings.refresh_window,
                    "sweep_interval_s": timings.sweep_interval,
                    "backoff_base_s": timings.backoff_base,
                    "backoff_cap_s": timings.backoff_cap,
                    "queued_marker_ttl_s": timings.marker_ttl,
                    "settle_s": timings.settle,
                },
            },
            "refreshes": {
                "sandbox_ok": sandbox.get("ok", 0),
                "stored_rotations": stored_rotations,
                "replies_dropped_by_sandbox": dropped,
                "rotations_lost_in_flight": len(rotated_in_flight),
                # Rotations the sandbox made that the partner neither stored nor lost in flight:
                # each would be a refresh token the product itself lost.
                "unaccounted_rotations": unaccounted,
                # The same, grant by grant where the sandbox could say (its rotations of the
                # grant against the partner's): which connections the figure above comes from.
                "unaccounted_examples": dict(list(unaccounted_by_connection.items())[:20]),
                "partner_outcomes": partner,
                "sandbox_outcomes": sandbox,
                "metric_resets_seen": self.sampler.partner_metrics.resets,
            },
            "failures_by_kind": {
                "partner": {k: v for k, v in partner.items() if k not in NOT_FAILURES},
                "sandbox": {k: v for k, v in sandbox.items() if k != "ok"},
                "refresh_failed_events": self.verification["events"].get("refresh_failed", 0),
            },
            "time_without_valid_access_token": {
                "longest_inside_fault_windows_s": round(inside_max, 1),
                "longest_outside_fault_windows_s": round(outside_max, 1),
                "late_outside_fault_windows": len(late),
                "late_examples": late[:20],
                "gaps_total": len(self.sampler.gaps),
                "gaps_excluded_revoked_or_dropped": excluded_gaps,
            },
            "connections": {
                "final_status": statuses,
                "lost": len(lost),
                "lost_examples": dict(list(lost.items())[:20]),
                "deliberately_revoked": len(revoked),
                "revoked_detected_needs_reconnect": revoked_detected,
                "lost_in_flight": len(in_flight),
                "lost_in_flight_told_lost_reply": told_lost_reply,
                "lost_in_flight_examples": {
                    c: round(t - self.t0, 1) for c, t in list(in_flight.items())[:20]
                },
                # Included in "lost": rotations the partner received but could not store.
                "lost_to_database_failure": len(database_lost),
                "lost_to_database_failure_examples": {
                    c: round(t - self.t0, 1) for c, t in list(database_lost.items())[:20]
                },
            },
            "sync": sync,
            "writes": writes,
            "user_pages": pages,
            "faults": [w.as_json(self.t0) for w in self.windows],
            # Product processes that exited by themselves and were started again, as their
            # supervisor would in a deployment.
            "process_restarts": self.crashes,
            "web_readiness_probes": dict(sorted(self.sampler.readiness.items())),
            "sampling": {
                "samples": self.sampler.samples,
                "slowest_sample_ms": round(self.sampler.sample_ms_max, 1),
                "scrape_errors": self.sampler.scrape_errors,
                "sample_errors": self.sampler.sample_errors,
                "cpus": os.cpu_count(),
                "load_average_mean": round(statistics.fmean(load), 1) if load else None,
                "load_average_max": round(max(load), 1) if load else None,
            },
            "stack": self.stack,
            "notes": self.notes,
        }
        return self

    def _unaccounted_by_connection(
        self, rotated_in_flight: dict[str, float], revoked: set[str]
    ) -> dict[str, dict[str, Any]]:
        """Each connection whose grant the sandbox rotated more (or fewer) times than the partner
        stored plus the one lost in flight, with the figures that say so."""
        found: dict[str, dict[str, Any]] = {}
        for conn_id, state in self.verification["connections"].items():
            at_sandbox = state.get("sandbox_rotations")
            if at_sandbox is None:
                continue
            stored = int(state["version"]) - 1
            in_flight = 1 if conn_id in rotated_in_flight else 0
            if at_sandbox != stored + in_flight:
                found[conn_id] = {
                    "sandbox_rotations": at_sandbox,
                    "stored_rotations": stored,
                    "lost_in_flight": in_flight,
                    "revoked": conn_id in revoked,
                    "status": state["status"],
                    "refresh_reason": state.get("refresh_reason"),
                    "refresh_revoked_at": state.get("refresh_revoked_at"),
                }
        return found

    def _rotated_in_flight(self, conn_id: str, tenant: str, state: dict[str, Any]) -> float | None:
        """When the sandbox rotated this connection's stored refresh token while a fault was
        dropping replies (a SIGKILLed worker's in-flight refreshes, the dropped replies), if it
        did; None otherwise."""
        return self._rotated_during(conn_id, tenant, state, ("worker_kill", "lost_replies"))

    def _rotated_during(
        self, conn_id: str, tenant: str, state: dict[str, Any], kinds: tuple[str, ...]
    ) -> float | None:
        """When the sandbox rotated this connection's stored refresh token (so the partner
        kept a dead one) during a window of one of ``kinds``, if it did; None otherwise."""
        if state["refresh_active"] or state.get("refresh_reason") != "rotated":
            return None
        if not state.get("refresh_revoked_at"):
            return None
        rotated = datetime.fromisoformat(state["refresh_revoked_at"]).timestamp()
        reach = float(self.config.timings.http_timeout)
        for window in self.windows:
            if window.kind not in kinds:
                continue
            if window.kind == "worker_kill":
                # Requests sent before the kill are still answered (and rotated) after it.
                span = (window.start - reach, window.start + reach)
            elif window.kind == "lost_replies":
                span = (window.start, (window.end or window.start) + 1.0)
            else:
                # A refresh sent before the fault is answered and its write fails inside it.
                span = (window.start - reach, (window.end or window.start) + 1.0)
            if window.applies_to(conn_id, tenant) and span[0] <= rotated <= span[1]:
                return rotated
        return None

    def _writes(self, excused: set[str]) -> dict[str, Any] | None:
        """The writes' check, with those waiting for a reconnect split by whether the
        connection's loss is excused."""
        if self.writes is None:
            return None
        waiting: dict[str, int] = self.writes.get("waiting_for_reconnect", {})
        return {
            **self.writes,
            "waiting_for_reconnect_excused": sum(n for c, n in waiting.items() if c in excused),
            "waiting_for_reconnect_not_excused": {
                c: n for c, n in waiting.items() if c not in excused
            },
        }

    def _pages(self) -> dict[str, Any]:
        """The visitor's answers, by status, inside and outside the database outage."""
        outages = [
            (w.start, (w.end or w.start) + DATABASE_SETTLE)
            for w in self.windows
            if w.kind == "postgres_restart"
        ]
        by_status: dict[str, int] = {}
        outside: list[Answer] = []
        no_answer = 0
        inside = {"requests": 0, "503_with_sentence": 0, "other_server_errors": 0}
        for answer in self.answers:
            by_status[str(answer.status)] = by_status.get(str(answer.status), 0) + 1
            server_error = isinstance(answer.status, int) and answer.status >= 500
            # A page sent just before PostgreSQL stopped can meet the outage before it answers.
            if any(answer.at <= end and answer.ended >= start for start, end in outages):
                inside["requests"] += 1
                if answer.status == 503 and answer.sentence:
                    inside["503_with_sentence"] += 1
                elif server_error:
                    inside["other_server_errors"] += 1
            elif server_error:
                outside.append(answer)
            elif not isinstance(answer.status, int):
                no_answer += 1
        return {
            "requests": len(self.answers),
            "by_status": dict(sorted(by_status.items())),
            "server_errors_outside_database_outage": len(outside),
            "server_error_examples": [a.as_json(self.t0) for a in outside[:20]],
            "no_answer_outside_database_outage": no_answer,
            "inside_database_outage": inside,
        }

    @property
    def accepted(self) -> bool:
        return bool(self.figures.get("accepted"))

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.figures, indent=2, sort_keys=False) + "\n")

    def table(self) -> str:
        f = self.figures
        run, refreshes = f["run"], f["refreshes"]
        gaps, conns = f["time_without_valid_access_token"], f["connections"]
        timings = run["timings"]

        def kinds(values: dict[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(values.items())) or "none"

        rows = [
            ("connections", f"{run['connections']} over {run['tenants']} tenants"),
            (
                "run",
                f"{run['seconds_run']:.0f} s (set-up {run['setup_seconds']:.0f} s), faults "
                f"{run['faults']}, web x{run['web_workers']}, refresh workers "
                f"{run['refresh_workers']} x {run['concurrency']}",
            ),
            (
                "timings",
                f"access {timings['access_lifetime_s']} s, window {timings['refresh_window_s']} s, "
                f"sweep {timings['sweep_interval_s']} s, back-off {timings['backoff_base_s']}-"
                f"{timings['backoff_cap_s']} s, settle {timings['settle_s']} s",
            ),
            (
                "refreshes",
                f"{refreshes['sandbox_ok']} at the sandbox, {refreshes['stored_rotations']} "
                f"stored, {refreshes['rotations_lost_in_flight']} lost in flight, "
                f"{refreshes['unaccounted_rotations']} unaccounted",
            ),
            ("failures (partner)", kinds(f["failures_by_kind"]["partner"])),
            ("failures (sandbox)", kinds(f["failures_by_kind"]["sandbox"])),
            (
                "longest without token",
                f"{gaps['longest_inside_fault_windows_s']} s inside fault windows, "
                f"{gaps['longest_outside_fault_windows_s']} s outside",
            ),
            ("late outside windows", str(gaps["late_outside_fault_windows"])),
            (
                "connections lost",
                f"{conns['lost']} (revoked on purpose {conns['deliberately_revoked']}, "
                f"{conns['revoked_detected_needs_reconnect']} detected; lost in flight "
                f"{conns['lost_in_flight']}, {conns['lost_in_flight_told_lost_reply']} "
                "told the reply was lost)",
            ),
            ("final status", kinds(conns["final_status"])),
            (
                "lost to the database",
                f"{conns['lost_to_database_failure']} (rotated, then the write failed; in lost)",
            ),
            (
                "syncs",
                f"runs {kinds(f['sync'].get('runs', {}))}; {f['sync'].get('connections_synced', 0)}"
                f" connections synced, {f['sync'].get('documents_stored', 0)} documents stored, "
                f"{f['sync']['documents_wrongly_deleted']} wrongly deleted",
            ),
            ("writes", _writes_row(f["writes"])),
            (
                "user pages",
                f"{f['user_pages']['requests']} requests ({kinds(f['user_pages']['by_status'])}); "
                f"{f['user_pages']['server_errors_outside_database_outage']} 5xx outside the "
                f"database outage; inside it "
                f"{f['user_pages']['inside_database_outage']['503_with_sentence']} 503 with a "
                f"sentence, {f['user_pages']['inside_database_outage']['other_server_errors']} "
                "other 5xx",
            ),
            (
                "process restarts",
                "; ".join(
                    f"{c['process']} exited {c['exit']} at {c['at_s']:.0f} s"
                    for c in f["process_restarts"]
                )
                or "none",
            ),
            (
                "faults",
                "; ".join(
                    f"{w['label']} {w['start_s']:.0f}-{w['end_s']:.0f} s" for w in f["faults"]
                )
                or "none",
            ),
            (
                "web /readyz",
                ", ".join(f"{k}: {v}" for k, v in sorted(f["web_readiness_probes"].items()))
                or "not probed",
            ),
            (
                "machine",
                f"{f['sampling']['cpus']} CPUs, load average {f['sampling']['load_average_mean']} "
                f"(max {f['sampling']['load_average_max']}) during the run",
            ),
            ("verdict", "ACCEPTED" if self.accepted else "FAILED"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def _writes_row(writes: dict[str, Any] | None) -> str:
    if writes is None:
        return "none"
    return (
        f"{writes['committed_by_feed']} notes queued, {writes['notes_delivered']} delivered, "
        f"{writes['notes_at_sandbox']} at the sandbox; attachments {writes['attachments']} "
        f"queued, {writes['attachments_at_sandbox']} at the sandbox; {writes['duplicates']} "
        f"duplicates, {writes['lost']} lost; waiting for a reconnect "
        f"{writes['waiting_for_reconnect_excused']} on excused connections, "
        f"{sum(writes['waiting_for_reconnect_not_excused'].values())} on others; "
        f"drained in {writes.get('drain_s', 0):.0f} s"
    )
