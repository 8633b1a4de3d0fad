"""Helpers for the servers and workers that tests, benchmarks and the soak start as child processes."""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1  # prctl(2)


def die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGTERM when the test process dies, even by SIGKILL, so a
    killed test run leaves no sandbox or worker behind (Linux; kept across exec)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def celery_worker_argv(*, concurrency: int, loglevel: str, name: str) -> list[str]:
    """A real Celery worker on every queue (prefork, as deployed), without the cluster chatter
    that a single test or benchmark worker has no use for."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "bipsync_partner.celery",
        "worker",
        "-Q",
        "default,refresh,sync,writes,events",
        "-c",
        str(concurrency),
        "-P",
        "prefork",
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-n",
        name,
    ]
