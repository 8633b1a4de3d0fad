"""bin/run's foreground: the Procfile's processes under honcho until Ctrl-C, then a Ready block.

``honcho start`` itself is not used, for two reasons:

- **Ctrl-C with piped output.** honcho starts every process in its own session, so a Ctrl-C
  reaches only honcho, which then sends each process group SIGTERM (SIGKILL 5 s later). With
  ``bin/run | tee run.log`` the terminal's SIGINT also reaches tee, which dies at once; honcho's
  handler then prints "SIGINT received" into the closed pipe, the BrokenPipeError escapes the
  handler, so honcho signals nothing and then hangs at exit waiting for its reader processes:
  web, worker, beat and the sandbox stay up with their ports taken. Here output that can no longer be written is dropped (stdout moves
  to /dev/null, as Python's signal documentation advises for SIGPIPE) and the shutdown goes on.
- **Ready.** Once the web app and the sandbox answer, the worker says it is ready and the
  processes' start-up banners have been printed, a short block of addresses and demo logins ends
  the start-up, so it is the last thing on the screen.
"""

from __future__ import annotations

import datetime
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
from honcho.environ import parse_procfile
from honcho.manager import Manager
from honcho.printer import Message, Printer

# The name of the Ready block's message: printed as it is, without honcho's time and name prefix.
READY = "ready"
# The banners are done when no process has printed a line for this long.
QUIET_SECONDS = 1.0


@dataclass(frozen=True)
class Readiness:
    """What must hold before the Ready block is printed."""

    # Addresses that must answer 200 (the processes' health checks).
    urls: Sequence[str]
    # Process name -> text that one of its lines contains once it is ready.
    lines: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: float = 180.0


class TolerantPrinter(Printer):  # type: ignore[misc]
    """honcho's printer, except that a closed stdout (a reader such as tee gone) stops the
    output instead of honcho, and it notes what each process has printed for the Ready check."""

    def __init__(self, output: TextIO) -> None:
        super().__init__(output)
        self.last_line = time.monotonic()
        self.seen: dict[str, list[str]] = {}
        self.lock = threading.Lock()

    def write(self, message: Any) -> None:
        if message.name != READY:
            with self.lock:
                self.last_line = time.monotonic()
                text = (
                    message.data.decode("utf-8", "replace")
                    if isinstance(message.data, bytes)
                    else message.data
                )
                self.seen.setdefault(message.name or "", []).append(text)
        try:
            if message.name == READY:
                print(message.data, file=self.output, flush=True)
            else:
                super().write(message)
        except BrokenPipeError:
            silence(self.output)
        except RuntimeError as exc:
            # A signal handler's line printed while a line was being written (honcho prints
            # from its SIGINT handler): drop the handler's line rather than the shutdown.
            if "reentrant" not in str(exc):
                raise

    def has_printed(self, name: str, text: str) -> bool:
        with self.lock:
            return any(text in line for line in self.seen.get(name, ()))

    def quiet_for(self, seconds: float) -> bool:
        with self.lock:
            return time.monotonic() - self.last_line >= seconds


def silence(output: TextIO) -> None:
    """Point the closed stream's file descriptor at /dev/null, so that nothing written later
    (honcho's own lines, the interpreter's final flush) fails again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, output.fileno())
    finally:
        os.close(devnull)


class ForegroundManager(Manager):  # type: ignore[misc]
    """honcho's manager, calling ``after_start`` once every process has been started (a thread
    started before honcho forks its readers could hold a lock the forked children inherit)."""

    def __init__(self, printer: TolerantPrinter, after_start: Callable[[], None]) -> None:
        super().__init__(printer=printer)
        self._after_start = after_start

    def _start(self) -> None:
        super()._start()
        self._after_start()


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until_ready(printer: TolerantPrinter, readiness: Readiness) -> list[str]:
    """Wait for the readiness conditions and then for the banners to end; return what is still
    missing when the time is up (empty when ready)."""
    deadline = time.monotonic() + readiness.timeout_seconds
    missing: list[str] = []
    while time.monotonic() < deadline:
        missing = [url for url in readiness.urls if not answers(url)]
        missing += [
            f"{name} to print {text!r}"
            for name, text in readiness.lines.items()
            if not printer.has_printed(name, text)
        ]
        if not missing:
            break
        time.sleep(0.5)
    while missing == [] and time.monotonic() < deadline and not printer.quiet_for(QUIET_SECONDS):
        time.sleep(0.1)
    return missing


def run(procfile: Path, env: dict[str, str], readiness: Readiness, ready_text: str) -> int:
    """Run the Procfile's processes until Ctrl-C (or one of them ends); the exit status."""
    printer = TolerantPrinter(sys.stdout)

    def announce() -> None:
        missing = wait_until_ready(printer, readiness)
        text = ready_text
        if missing:
            text = f"Not ready after {readiness.timeout_seconds:.0f} s: waiting for " + (
                ", ".join(missing) + "; see the lines above."
            )
        manager.events.put(
            Message(type="line", data=text, time=datetime.datetime.now(), name=READY, colour=None)
        )

    def after_start() -> None:
        threading.Thread(target=announce, name="ready", daemon=True).start()

    manager = ForegroundManager(printer, after_start)
    for name, command in parse_procfile(procfile.read_text()).processes.items():
        manager.add_process(name, command, env=env, cwd=str(procfile.parent))
    manager.loop()
    return int(manager.returncode or 0)
