"""``/research``: the team's research as an API key reads it.

What a key sees is the team's, not a person's: the documents a team-wide connection (service
account, machine) sees, not those only a member's own connection sees (Bipsync shows those to
that person alone; :func:`~bipsync_partner.sync.visibility.research_visible_to_team`).

A resource is a queryset of what the caller may read and a schema: its list and detail
endpoints are the four lines of each below (``paging.page`` and ``paging.one``).
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Router

from bipsync_partner.api.auth import READ, Caller, caller
from bipsync_partner.api.paging import Page, one, page
from bipsync_partner.api.responses import READ_ERRORS
from bipsync_partner.api.schemas import ResearchOut, ResearchPage
from bipsync_partner.sync.models import ResearchDocument
from bipsync_partner.sync.research import bipsync_url
from bipsync_partner.sync.visibility import research_visible_to_team

router = Router(tags=["research"], auth=READ)


def visible_research(who: Caller) -> QuerySet[ResearchDocument]:
    return ResearchDocument.objects.filter(
        research_visible_to_team(who.team), deleted_at__isnull=True
    )


def research_out(doc: ResearchDocument) -> ResearchOut:
    return ResearchOut(
        id=doc.pk,
        bipsync_id=doc.bipsync_id,
        tenant=doc.tenant,
        title=doc.title,
        content_type=doc.content_type_bid,
        author_id=doc.author_bid,
        author_name=doc.author_name,
        fields=doc.lookup_fields or {},
        bipsync_created=doc.bipsync_created,
        bipsync_modified=doc.bipsync_modified,
        first_synced_at=doc.first_synced_at,
        changed_at=doc.changed_at,
        url=bipsync_url(doc),
    )


def _page_out(found: Page[ResearchDocument]) -> ResearchPage:
    return ResearchPage(items=[research_out(d) for d in found.items], next_cursor=found.next_cursor)


@router.get("/research", response={200: ResearchPage, **READ_ERRORS}, summary="List research")
def list_research(
    request: HttpRequest, after: str | None = None, limit: int | None = None
) -> ResearchPage:
    return _page_out(page(visible_research(caller(request)), after, limit))


@router.get(
    "/research/{doc_id}", response={200: ResearchOut, **READ_ERRORS}, summary="Get research"
)
def get_research(request: HttpRequest, doc_id: int) -> ResearchOut:
    return research_out(one(visible_research(caller(request)), doc_id, "research document"))
