"""Who and what a log line is about: the request id and the connection id, per task or request.

Context variables follow the code through function calls without being passed around, and each
thread, request and Celery task sees its own values.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

request_id: ContextVar[str] = ContextVar("request_id", default="-")
connection_id: ContextVar[str] = ContextVar("connection_id", default="-")


@contextlib.contextmanager
def bound(*, request: str | None = None, connection: object | None = None) -> Iterator[None]:
    """Set the request id and/or connection id for the duration of a block."""
    tokens = []
    if request is not None:
        tokens.append((request_id, request_id.set(request)))
    if connection is not None:
        tokens.append((connection_id, connection_id.set(str(connection))))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
