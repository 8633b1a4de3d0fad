"""Relay connections over querysets (Relay "Cursor Connections Specification").

Cursors are opaque base64 of the item's position in the ordered result [choice]: a position is
all that is needed to page one ordered list forward and backward, and it works for every sort
order (a keyset cursor would need a column per sort).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import strawberry
from django.conf import settings
from django.db.models import QuerySet

from bipsync_sandbox.api.graph.context import bad_input

N = TypeVar("N")
_PREFIX = "position:"


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[N]):
    node: N
    cursor: str


@strawberry.type
class Connection(Generic[N]):
    edges: list[Edge[N]]
    page_info: PageInfo
    total_count: int


def cursor_of(position: int) -> str:
    return base64.b64encode(f"{_PREFIX}{position}".encode()).decode()


def position_of(cursor: str, argument: str) -> int:
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if not text.startswith(_PREFIX) or not text[len(_PREFIX) :].isdigit():
        raise bad_input(f"{argument} is not a cursor this API gave out.")
    return int(text[len(_PREFIX) :])


def page_size(value: int | None, argument: str) -> int | None:
    if value is None:
        return None
    maximum = settings.SANDBOX_GRAPHQL_PAGE_SIZE_MAX
    if value < 0:
        raise bad_input(f"{argument} must not be negative.")
    if value > maximum:
        raise bad_input(f"{argument} must be at most {maximum}.")
    return value


def connect(
    query: QuerySet[Any],
    make_node: Callable[[Any], N],
    *,
    first: int | None,
    after: str | None,
    last: int | None = None,
    before: str | None = None,
) -> Connection[N]:
    """One window of the ordered ``query``: Relay's "Pagination algorithm" on positions."""
    first = page_size(first, "first")
    last = page_size(last, "last")
    total = query.count()
    start = position_of(after, "after") + 1 if after is not None else 0
    end = min(total, position_of(before, "before")) if before is not None else total
    start = min(start, end)
    if first is None and last is None:
        first = settings.SANDBOX_GRAPHQL_PAGE_SIZE_MAX
    lo, hi = start, end
    if first is not None:
        hi = min(hi, lo + first)
    if last is not None:
        lo = max(lo, hi - last)
    rows = list(query[lo:hi]) if hi > lo else []
    edges = [Edge(node=make_node(row), cursor=cursor_of(lo + i)) for i, row in enumerate(rows)]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=lo + len(rows) < end,
            has_previous_page=lo > 0,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        total_count=total,
    )
