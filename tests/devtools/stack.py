"""bin/run as a developer starts it, piped into tee, on ports and a data folder of its own.

A :class:`Home` is what a checkout's ``var/`` is to bin/run: the embedded PostgreSQL and Redis,
the development secrets and beat's schedule, here in a temporary folder and on free ports
(``DEVSTACK_*``, README "The two commands"), so that the tests run beside a real bin/run on
8000/8100/54329/63799. :class:`Stack` is one ``bin/run | tee run.log`` in its own process group,
stopped as a terminal stops it: SIGINT to the whole foreground group.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from devtools import services
from devtools.sandbox_server import free_port

ROOT = services.ROOT
# What a new terminal has; bin/check's test settings (DEBUG, DATABASE_URL, ...) are not in it.
TERMINAL_VARIABLES = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "BIPSYNC_PYTHON",
)
READY = "==> Ready"


@dataclass(frozen=True)
class Home:
    var: Path
    web_port: int
    sandbox_port: int
    postgres_port: int
    redis_port: int

    @classmethod
    def create(cls, folder: Path) -> Home:
        return cls(folder / "var", free_port(), free_port(), free_port(), free_port())

    @property
    def env(self) -> dict[str, str]:
        env = {
            name: os.environ[name]
            for name in os.environ
            if name in TERMINAL_VARIABLES or name.startswith("UV_")
        }
        env.update(
            {
                "DEVSTACK_VAR": str(self.var),
                "DEVSTACK_WEB_PORT": str(self.web_port),
                "DEVSTACK_SANDBOX_PORT": str(self.sandbox_port),
                "DEVSTACK_POSTGRES_PORT": str(self.postgres_port),
                "DEVSTACK_REDIS_PORT": str(self.redis_port),
            }
        )
        return env

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def sandbox(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def dev_env(self) -> dict[str, str]:
        """var/dev.env, the development secrets bin/run made."""
        lines = (self.var / "dev.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line and line[0] != "#")

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``bin/manage ARGS`` in a second terminal."""
        return subprocess.run(
            ["bin/manage", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stop_servers(self) -> None:
        """``python -m devtools stop`` for this home's embedded servers."""
        subprocess.run(
            [".venv/bin/python", "-m", "devtools", "stop"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            timeout=60,
            check=False,
        )


def _default_sigint() -> None:
    # A terminal's foreground job gets Ctrl-C with default SIGINT handling; a test run started in
    # the background ignores SIGINT, and children inherit that.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Stack:
    home: Home
    log: Path
    shell: subprocess.Popen[bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.shell = subprocess.Popen(
            ["bash", "-c", 'bin/run 2>&1 | tee "$RUN_LOG"'],
            cwd=ROOT,
            env={**self.home.env, "RUN_LOG": str(self.log)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own process group, as a terminal's foreground job is.
            start_new_session=True,
            preexec_fn=_default_sigint,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_until_ready(self, timeout: float = 420) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output()
            if READY in text:
                return text
            if self.shell.poll() is not None:
                raise AssertionError(f"bin/run ended ({self.shell.returncode}):\n{text[-4000:]}")
            time.sleep(0.5)
        raise AssertionError(f"bin/run was not ready in {timeout:.0f} s:\n{self.output()[-4000:]}")

    def process_groups(self) -> list[int]:
        """The process groups honcho started (it logs "web started (pid=N)"; each is a group)."""
        return [int(pid) for pid in re.findall(r"\| [\w.]+ started \(pid=(\d+)\)", self.output())]

    def ctrl_c(self, timeout: float = 60) -> int:
        """One Ctrl-C, as a terminal sends it: SIGINT to the foreground process group."""
        os.killpg(self.shell.pid, signal.SIGINT)
        return self.shell.wait(timeout=timeout)

    def kill_leftovers(self) -> None:
        """Last resort after a failed test, so that nothing outlives the run."""
        for group in [self.shell.pid, *self.process_groups()]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        if self.shell.poll() is None:
            self.shell.wait(timeout=10)
