"""Relay connections over querysets (Relay "Cursor Connections Specification").

Cursors are opaque base64 of the item's position in the ordered result [choice], which pages any
sort order forward and backward. A connection in id order also puts the item's id in its cursor,
so that the next page starts with an index range (``id > cursor's id``) rather than an OFFSET
that walks every earlier row: paging 100,000 categories stays linear. ``totalCount`` is counted
only when the query asks for it, and ``hasNextPage`` comes from fetching one item more.
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
    counter: strawberry.Private[Callable[[], int]]

    @strawberry.field
    def total_count(self) -> int:
        return self.counter()


def cursor_of(position: int, key: str | None = None) -> str:
    text = f"{_PREFIX}{position}" + (f":{key}" if key is not None else "")
    return base64.b64encode(text.encode()).decode()


def decode(cursor: str, argument: str) -> tuple[int, str | None]:
    """A cursor's position, and the id it carries (None in a cursor without one)."""
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    position, _, key = text.removeprefix(_PREFIX).partition(":")
    if not text.startswith(_PREFIX) or not position.isdigit():
        raise bad_input(f"{argument} is not a cursor this API gave out.")
    return int(position), key or None


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
    keyed: bool = False,
) -> Connection[N]:
    """One window of the ordered ``query`` (Relay's "Pagination algorithm"). ``keyed``: the
    query is in ascending primary-key order, so cursors carry the id (see the module)."""
    first = page_size(first, "first")
    last = page_size(last, "last")
    if last is None and before is None:
        return _forward(query, make_node, first, after, keyed)
    total = query.count()
    start = decode(after, "after")[0] + 1 if after is not None else 0
    end = min(total, decode(before, "before")[0]) if before is not None else total
    start = min(start, end)
    lo, hi = start, end
    if first is not None:
        hi = min(hi, lo + first)
    if last is not None:
        lo = max(lo, hi - last)
    rows = list(query[lo:hi]) if hi > lo else []
    return _connection(rows, make_node, lo, keyed, lo + len(rows) < end, lambda: total)


def _forward(
    query: QuerySet[Any],
    make_node: Callable[[Any], N],
    first: int | None,
    after: str | None,
    keyed: bool,
) -> Connection[N]:
    size = settings.SANDBOX_GRAPHQL_PAGE_SIZE_MAX if first is None else first
    start, window = 0, query
    if after is not None:
        position, key = decode(after, "after")
        start = position + 1
        window = query.filter(pk__gt=key) if keyed and key else query[start:]
    # One item more than asked tells whether there is a next page, without counting.
    rows = list(window[: size + 1]) if size > 0 else []
    return _connection(rows[:size], make_node, start, keyed, len(rows) > size, query.count)


def _connection(
    rows: list[Any],
    make_node: Callable[[Any], N],
    start: int,
    keyed: bool,
    has_next: bool,
    counter: Callable[[], int],
) -> Connection[N]:
    edges = [
        Edge(node=make_node(row), cursor=cursor_of(start + i, row.pk if keyed else None))
        for i, row in enumerate(rows)
    ]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_next,
            has_previous_page=start > 0,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        counter=counter,
    )
