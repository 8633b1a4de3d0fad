"""What storing a page or some documents returns, and the one way it stops."""

from __future__ import annotations

from dataclasses import dataclass


class ConnectionGone(Exception):
    """The connection was deleted while its sync ran: nothing was written."""


@dataclass
class PageResult:
    seen: int
    created: int
    updated: int
    unchanged: int
    #: Documents the connection saw for the first time (its new sightings).
    sighted: int = 0
