"""Peak memory of processes, read from Linux's own accounting.

``VmHWM`` in ``/proc/<pid>/status`` is the process's peak resident set ("high water mark"),
kept by the kernel: a measure of the most a process ever held, with no sampling to miss a
short peak (proc(5)).
"""

from __future__ import annotations

from pathlib import Path


def peak_rss(pid: int) -> int:
    """The peak resident set of ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmHWM")


def pool_children(pid: int) -> list[int]:
    """The pool processes of a prefork Celery worker whose main process is ``pid``."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()  # proc(5)
    return sorted(int(child) for child in children)
