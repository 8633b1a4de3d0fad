"""Interpreter settings for the few places where threads in one process hand work to each other."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

#: A shorter thread switch interval than Python's 5 ms, for code where one thread waits on the
#: network while another computes: when the waiting thread's answer arrives, it gets the
#: interpreter lock back within this instead of up to 5 ms later.
HANDOFF_SWITCH_INTERVAL = 0.0005


@contextlib.contextmanager
def switch_interval(seconds: float = HANDOFF_SWITCH_INTERVAL) -> Iterator[None]:
    """The switch interval is per process: set for the block (a Celery worker process runs one
    task at a time), restored after it."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
