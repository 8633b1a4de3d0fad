"""The feed serves a change once every older transaction of the cluster has ended (see
bipsync_partner/feed/reading.py); other sessions on the same PostgreSQL may hold one open a
moment, so tests wait for what they committed rather than expect it at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = read()
        if done(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)
