"""A subprocess of the soak: its command, its log file, its own process group.

Each process starts a new session, so that stopping or killing it reaches its children too
(gunicorn's and Celery's worker processes) and nothing else: a SIGKILL to the group is what a
crashed host or an OOM-killed container does to a worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from devtools import services


def free_port() -> int:
    """A port nobody listens on now (the kernel's choice on 127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ProcessFailed(RuntimeError):
    """A process exited when it should be running, or a step exited non-zero."""


class Managed:
    """One long-running process of the soak (server, worker, beat)."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.log_path = logs / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.starts = 0
        # Set while the process is down on purpose (a fault), so that check() does not mind.
        self.down_on_purpose = False

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self._log.write(f"--- start {self.starts + 1}: {' '.join(self.argv)}\n".encode())
        self._log.flush()
        self.process = subprocess.Popen(
            self.argv,
            cwd=services.ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.starts += 1
        # Only now: the supervisor (another thread) starts again any process that is neither
        # down on purpose nor running, so clearing this before the new process exists let it
        # start a second one beside the fault's, which nothing then stopped.
        self.down_on_purpose = False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check(self) -> None:
        if self.down_on_purpose:
            return
        if self.process is not None and self.process.poll() is not None:
            raise ProcessFailed(
                f"{self.name} exited with {self.process.returncode}; see {self.log_path}"
            )

    def _signal_group(self, signum: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL the whole group, no goodbye: what the fault schedule does to a worker."""
        self.down_on_purpose = True
        self._signal_group(signal.SIGKILL)
        self._reap(5)

    def terminate(self) -> None:
        """SIGTERM to the main process only, without waiting (see :meth:`stop`)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                # Not to the group: Celery's main process does a warm shutdown (its pool finishes
                # the running tasks); a SIGTERM straight to a pool process would kill the task it
                # runs, mid-refresh. Orchestrators signal the main process the same way.
                self.process.send_signal(signal.SIGTERM)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the main process (warm shutdown), then SIGKILL to the group after
        ``grace`` seconds, or at once when the main process is gone, for anything left."""
        if self.process is None:
            return
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace)
        self._signal_group(signal.SIGKILL)
        self._reap(5)

    def _reap(self, seconds: float) -> None:
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=seconds)
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        self.stop()
        self.start()


def run_step(
    name: str, argv: Sequence[str], env: dict[str, str], logs: Path, timeout: float = 300
) -> str:
    """Run a set-up step to completion; its output goes to the log and is returned."""
    log_path = logs / f"{name}.log"
    started = time.monotonic()
    result = subprocess.run(
        list(argv),
        cwd=services.ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    with log_path.open("ab") as log:
        log.write(f"--- {' '.join(argv)} ({time.monotonic() - started:.1f} s)\n".encode())
        log.write(result.stderr)
    if result.returncode != 0:
        tail = result.stderr.decode(errors="replace")[-2000:]
        raise ProcessFailed(f"{name} failed ({result.returncode}); see {log_path}:\n{tail}")
    return result.stdout.decode()
