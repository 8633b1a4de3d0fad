"""What a slice of a run ends with, and what the task does next."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """What a slice of work ended with, and what the task should do next.

    ``action``: ``done`` (nothing more to do), ``continue`` (queue the next slice now),
    ``retry`` (queue again after ``countdown`` seconds).
    """

    action: str
    reason: str
    countdown: float = 0.0


DONE = "done"
CONTINUE = "continue"
RETRY = "retry"


class SliceOver(Exception):
    """The slice's time is up; the run continues in a new task from its checkpoint."""
