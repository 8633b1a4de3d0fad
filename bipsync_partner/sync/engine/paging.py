"""Reading a listing page by page, aligned with the last id read, to its reported end."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bipsync_partner.sync.api import ApiError, BipsyncApi
from bipsync_partner.sync.engine.items import valid_id

RESEARCH_PATH = "/v1/research"


@dataclass(frozen=True)
class Step:
    """What one page of a scan brings: the items not read before, and the new checkpoint."""

    offset: int
    items: list[dict[str, Any]]
    total: int
    next_offset: int
    anchor: str
    unstable: bool
    #: Items the list gained ahead of the scan's position since the previous page (the anchor
    #: found further in): the scan goes past them, and they count towards the total.
    passed: int = 0


def _ids(results: list[dict[str, Any]]) -> list[object]:
    return [item.get("id") for item in results]


def scan(
    api: BipsyncApi, *, next_offset: int, anchor: str, limit: int, path: str = RESEARCH_PATH
) -> Iterator[Step]:
    """Read the listing from a checkpoint to its end, one page at a time, keeping aligned.

    Offset paging over a list that changes can skip items: a deletion before the reader's
    position moves later items to offsets already read. Each page therefore starts one item
    early, at the last id read (the anchor). The anchor first: aligned. The anchor further in:
    items were inserted before it (nothing skipped; the items after it are new). The anchor
    absent: the list moved back; the page one page earlier is read and the anchor looked for
    there. If it is gone altogether (deleted itself), the scan is *unstable*: it goes on, but its
    "not seen" no longer means "deleted", so the run marks no deletions.

    The listing must end where its total says: a last page that stops short of the total it
    reports (an empty answer with a total, a truncated page) raises a transient
    ``incomplete_listing`` :class:`ApiError` once that page is handed over, so the run waits and
    reads on from its checkpoint instead of concluding from a partial scan.
    """
    steps = 0
    while True:
        steps += 1
        unstable = False
        passed = 0
        if next_offset == 0 or not anchor:
            page = api.page(path, offset=next_offset, limit=limit)
            items = page.results
        else:
            page = api.page(path, offset=next_offset - 1, limit=limit)
            ids = _ids(page.results)
            if anchor in ids:
                # Expected first; each place further in is an item inserted ahead of it.
                passed = ids.index(anchor)
                items = page.results[passed + 1 :]
            else:
                earlier = api.page(path, offset=max(0, next_offset - 1 - limit), limit=limit)
                earlier_ids = _ids(earlier.results)
                if anchor in earlier_ids:
                    page = earlier
                    items = earlier.results[earlier_ids.index(anchor) + 1 :]
                else:
                    unstable = True
                    items = page.results
        next_offset = page.offset + len(page.results)
        last_ids = [i for i in _ids(page.results) if valid_id(i)]
        anchor = str(last_ids[-1]) if last_ids else anchor
        yield Step(page.offset, items, page.total, next_offset, anchor, unstable, passed)
        if len(page.results) < limit or next_offset >= page.total:
            if next_offset < page.total:
                raise ApiError(
                    f"Bipsync's list of research ended after {next_offset} of the "
                    f"{page.total} documents it reported; the sync will read on from there, "
                    "and marks nothing deleted before a scan is complete.",
                    code="incomplete_listing",
                    transient=True,
                )
            return
        if steps > 3 * (page.total // max(1, limit - 1)) + 10:
            raise ApiError(
                "Bipsync's list kept shifting while it was read; the sync will try again.",
                code="unstable_listing",
                transient=True,
            )
