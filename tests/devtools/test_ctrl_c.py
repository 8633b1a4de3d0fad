"""``bin/run | tee run.log`` and one Ctrl-C: everything stops and every port is free again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import services
from tests.devtools.stack import Home, Stack

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(devstack_home: Home, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(devstack_home, tmp_path / "run.log")
    try:
        yield stack
    finally:
        stack.kill_leftovers()


def live_members(groups: list[int]) -> list[str]:
    """The processes of these process groups that still run. A zombie does not count: it has
    ended and holds no port, and waits only for init to collect it (its parent has exited)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # it ended while we looked
            continue
        # "pid (command) state ppid pgid ..."; the command may hold spaces and parentheses.
        command = text[text.index("(") + 1 : text.rindex(")")]
        state, _, pgid = text[text.rindex(")") + 2 :].split()[:3]
        if int(pgid) in groups and state != "Z":
            found.append(f"{stat.parent.name} {command} ({state})")
    return found


def test_one_ctrl_c_stops_bin_run_piped_into_tee_and_frees_its_ports(
    devstack_home: Home, stack: Stack
) -> None:
    stack.wait_until_ready()
    groups = stack.process_groups()
    assert len(groups) == 4, stack.output()[-3000:]

    status = stack.ctrl_c()

    assert status != 0  # the pipeline ended by the interrupt, as in a terminal
    assert live_members(groups) == []
    for port in (devstack_home.web_port, devstack_home.sandbox_port):
        assert not services.port_answers("127.0.0.1", port), f"{port} still answers"
