"""The soak's accounting of rotations, from a verification the sandbox and the partner agree on.

Built from plain figures rather than a run: the situation it checks (a deliberately revoked
connection that had already lost a rotation to a killed worker) happens in a one-minute soak
only when the fault schedule picks that connection for both faults.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from devtools.soak.config import SoakConfig
from devtools.soak.faults import Window
from devtools.soak.report import Report
from devtools.soak.sampler import Sampler
from devtools.soak.sandbox import SandboxAdmin

T0 = 1_800_000_000.0
KILL = T0 + 10.0
REVOKE = T0 + 28.0


def _state(version: int, **changes: Any) -> dict[str, Any]:
    state = {
        "status": "active",
        "version": version,
        "has_refresh_token": True,
        "refresh_active": True,
        "refresh_reason": None,
        "refresh_revoked_at": None,
        "code": "",
        "message": "",
    }
    return {**state, **changes}


def _rotated_at(moment: float) -> dict[str, Any]:
    """The partner holds a refresh token the sandbox rotated away at ``moment``."""
    return {
        "status": "needs_reconnect",
        "refresh_active": False,
        "refresh_reason": "rotated",
        "refresh_revoked_at": datetime.fromtimestamp(moment, UTC).isoformat(),
    }


def _report(connections: dict[str, dict[str, Any]], sandbox_ok: int) -> dict[str, Any]:
    sampler = Sampler("postgres://unused", "http://unused", cast(SandboxAdmin, None))
    sampler.sandbox_refreshes = {"ok": sandbox_ok}
    windows = [
        Window("worker_kill", "SIGKILL worker-refresh-1", KILL, KILL + 3.0),
        Window("revoke", "grants revoked", REVOKE, REVOKE, connections=frozenset({"dave"})),
    ]
    report = Report(
        config=SoakConfig(connections=len(connections), minutes=1.0),
        t0=T0,
        t_end=T0 + 60.0,
        windows=windows,
        sampler=sampler,
        manifest=[{"connection": c, "tenant": "soak-01"} for c in connections],
        revoked={"dave": "grant-of-dave"},
        verification={"connections": connections, "events": {}, "sync": {}},
        setup_seconds=1.0,
    ).compute()
    return report.figures


def test_a_revoked_connections_rotation_lost_to_a_killed_worker_is_accounted_for() -> None:
    figures = _report(
        {
            "alice": _state(3, sandbox_rotations=2),  # two rotations stored
            # One stored, one lost in the kill.
            "bob": _state(2, sandbox_rotations=2, **_rotated_at(KILL + 0.5)),
            # The same, and then revoked.
            "dave": _state(2, sandbox_rotations=2, **_rotated_at(KILL + 1.0)),
        },
        sandbox_ok=2 + 2 + 2,
    )

    assert figures["refreshes"]["rotations_lost_in_flight"] == 2
    assert figures["refreshes"]["unaccounted_rotations"] == 0
    # Bob is excused as lost in flight; Dave as revoked, not twice.
    assert figures["connections"]["lost_in_flight"] == 1
    assert figures["connections"]["lost"] == 0
    assert figures["refreshes"]["unaccounted_examples"] == {}


def test_a_rotation_nobody_stored_outside_the_faults_is_unaccounted() -> None:
    figures = _report(
        {
            "alice": _state(3, sandbox_rotations=2),
            "dave": _state(2, sandbox_rotations=2, **_rotated_at(T0 + 45.0)),
        },
        sandbox_ok=2 + 2,
    )

    assert figures["refreshes"]["unaccounted_rotations"] == 1
    # The figure names its connection, with what each side counted.
    examples = figures["refreshes"]["unaccounted_examples"]
    assert list(examples) == ["dave"]
    assert examples["dave"]["sandbox_rotations"] == 2
    assert examples["dave"]["stored_rotations"] == 1
    assert examples["dave"]["lost_in_flight"] == 0
