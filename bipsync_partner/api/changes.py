"""``/changes``: the team's change feed (:mod:`bipsync_partner.feed.reading`), oldest first.

Research entries follow what the key may read (:mod:`.research`): an entry created or changed
of a document only a member's own connection sees is left out of the page, and so is one of a
note body or an attachment of such a document (a body is keyed by its document's id, which
would name the document); a ``deleted`` entry is always given (it names only the id, and the
consumer must drop what it holds). The other resources are the team's (:mod:`.resources`).

What the key may read can change without the document's row changing: a document becomes the
team's when a team-wide connection sees it too, and stops being it when the last one no longer
does. The feed has an entry for each (``changed`` and ``deleted``, from the sightings' triggers:
``bipsync_partner.feed.triggers.track_team_visibility``), so a consumer that applies every entry
holds what the key may read.

Each entry names its resource, and ``path`` where the API serves the row.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from ninja import Router

from bipsync_partner.api.auth import READ, Caller, caller
from bipsync_partner.api.paging import page_size
from bipsync_partner.api.problems import bad_parameter
from bipsync_partner.api.research import visible_research
from bipsync_partner.api.resources import PATHS
from bipsync_partner.api.responses import READ_ERRORS
from bipsync_partner.api.schemas import ChangeOut, ChangePage
from bipsync_partner.feed.reading import Change, FeedPage, read_changes
from bipsync_partner.sync.models import SyncedAttachment

router = Router(tags=["changes"], auth=READ)


#: Resources whose rows belong to a research document, and so follow its visibility.
OF_DOCUMENTS = ("note_bodies", "attachments")


def _screened(entry: Change) -> bool:
    return entry.action != "deleted" and entry.resource in ("research", *OF_DOCUMENTS)


def _documents(entries: list[Change]) -> dict[int, tuple[str, str]]:
    """Entry id -> (tenant, Bipsync id) of the document a screened entry's row belongs to."""
    attachments = {e.row_id for e in entries if e.resource == "attachments"}
    parents = {
        pk: (tenant, bid)
        for pk, tenant, bid in SyncedAttachment.objects.filter(pk__in=attachments).values_list(
            "pk", "tenant", "document_bid"
        )
    }
    found: dict[int, tuple[str, str]] = {}
    for e in entries:
        if e.resource == "note_bodies":
            found[e.id] = (e.tenant, e.bipsync_id)
        elif e.resource == "attachments" and e.row_id in parents:
            found[e.id] = parents[e.row_id]
    return found


def _readable(who: Caller, found: FeedPage) -> list[Change]:
    screened = [e for e in found.entries if _screened(e)]
    if not screened:
        return found.entries
    research = {e.row_id for e in screened if e.resource == "research"}
    documents = _documents(screened)
    visible = visible_research(who)
    rows = set(visible.filter(pk__in=research).values_list("pk", flat=True)) if research else set()
    bids = {bid for _, bid in documents.values()}
    docs = set(visible.filter(bipsync_id__in=bids).values_list("tenant", "bipsync_id"))

    def readable(entry: Change) -> bool:
        if not _screened(entry):
            return True
        if entry.resource == "research":
            return entry.row_id in rows
        return documents.get(entry.id) in docs

    return [e for e in found.entries if readable(e)]


def _path(entry: Change) -> str | None:
    prefix = PATHS.get(entry.resource)
    if prefix is None or entry.action == "deleted":
        return None
    return f"/api/v1/{prefix}/{entry.row_id}"


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
            path=_path(e),
            created=e.created,
        )
        for e in _readable(who, found)
    ]
    return ChangePage(entries=entries, next_cursor=found.next_cursor, has_more=found.has_more)
