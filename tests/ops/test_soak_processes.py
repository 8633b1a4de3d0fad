"""The soak's processes: a worker the fault schedule killed and starts again is never started
twice by the supervisor, which runs in another thread."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from devtools.soak.processes import Managed


def test_a_killed_worker_started_again_is_never_taken_for_a_crashed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = Managed("worker", ["sleep", "30"], {}, tmp_path)
    worker.start()
    worker.kill()
    seen: list[bool] = []
    real_popen = subprocess.Popen

    def popen_watched_by_the_supervisor(*args: Any, **kwargs: Any) -> Any:
        # What Stack.supervise reads, had it looked while the new process was being made.
        seen.append(worker.down_on_purpose or worker.running)
        return real_popen(*args, **kwargs)

    # Not a stand-in: the real Popen runs; the wrapper only looks on at the moment of the call.
    monkeypatch.setattr(subprocess, "Popen", popen_watched_by_the_supervisor)
    try:
        worker.start()
        assert seen == [True]
        assert worker.running
        assert not worker.down_on_purpose
    finally:
        worker.stop(grace=1)
    assert worker.starts == 2
