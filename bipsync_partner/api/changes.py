"""``/changes``: the team's change feed (:mod:`bipsync_partner.feed.reading`), oldest first.

Research entries follow what the key may read (:mod:`.research`): an entry created or changed
of a document only a member's own connection sees is left out of the page; a ``deleted`` entry
is always given (it names only the id, and the consumer must drop what it holds).
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from ninja import Router

from bipsync_partner.api.auth import READ, Caller, caller
from bipsync_partner.api.paging import page_size
from bipsync_partner.api.problems import bad_parameter
from bipsync_partner.api.research import visible_research
from bipsync_partner.api.responses import READ_ERRORS
from bipsync_partner.api.schemas import ChangeOut, ChangePage
from bipsync_partner.feed.reading import Change, FeedPage, read_changes

router = Router(tags=["changes"], auth=READ)


def _readable(who: Caller, found: FeedPage) -> list[Change]:
    def screened(entry: Change) -> bool:
        return entry.resource == "research" and entry.action != "deleted"

    research = {e.row_id for e in found.entries if screened(e)}
    if not research:
        return found.entries
    visible = set(visible_research(who).filter(pk__in=research).values_list("pk", flat=True))
    return [e for e in found.entries if not screened(e) or e.row_id in visible]


@router.get("/changes", response={200: ChangePage, **READ_ERRORS}, summary="Read the change feed")
def list_changes(
    request: HttpRequest, after: str | None = None, limit: int | None = None
) -> ChangePage:
    who = caller(request)
    size = page_size(limit if limit is not None else settings.API_CHANGES_PAGE_SIZE_DEFAULT)
    try:
        found = read_changes(who.team.pk, after, size)
    except ValueError as exc:
        raise bad_parameter("after", "query", str(exc)) from None
    entries = [
        ChangeOut(
            id=e.id,
            cursor=e.cursor,
            resource=e.resource,
            tenant=e.tenant,
            bipsync_id=e.bipsync_id,
            action=e.action,  # type: ignore[arg-type]
            row_id=e.row_id,
            created=e.created,
        )
        for e in _readable(who, found)
    ]
    return ChangePage(entries=entries, next_cursor=found.next_cursor, has_more=found.has_more)
