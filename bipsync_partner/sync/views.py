"""Sync pages: the team's syncs, a connection's history with live progress, "Sync now", the
team's sync setting, and the research browser.

Who sees what is one rule with the connections pages, in
:mod:`bipsync_partner.connections.visibility`: admins see every connection of the team, members
the team-wide ones and their own; research read through a member's own connection is shown to
that person only, admins included, and research of team-wide connections to every member.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.teams import TeamRequest, team_view
from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.visibility import research_sources, visible_connections
from bipsync_partner.sync import browse, companies, downloads, scheduling
from bipsync_partner.sync.forms import ResearchFilterForm, ScheduleForm, TeamSyncSettingsForm
from bipsync_partner.sync.html import sanitised
from bipsync_partner.sync.models import (
    DocumentSighting,
    NoteBody,
    ResearchDocument,
    SyncedAttachment,
    SyncedContentType,
    SyncedField,
    SyncedUser,
    SyncRun,
    SyncSchedule,
    TeamSyncSettings,
    may_sync,
)
from bipsync_partner.sync.research import bipsync_url, staleness
from bipsync_partner.sync.status import sync_sentence
from bipsync_partner.sync.visibility import research_visible_to

RUNS_PER_PAGE = 25
DOCUMENTS_PER_PAGE = 50


def _all_connections(request: TeamRequest) -> QuerySet[Connection]:
    """What the viewer may see, disconnected connections included (their history is read-only)."""
    return visible_connections(request.team, request.user, request.membership)


def _connections(request: TeamRequest) -> QuerySet[Connection]:
    return _all_connections(request).exclude(status=Connection.Status.DISCONNECTED)


def _connection_or_404(
    request: TeamRequest, connection_id: UUID, *, disconnected: bool = False
) -> Connection:
    """A connection the viewer may see; a disconnected one only where ``disconnected`` (the
    history page), never for what changes a sync (Sync now, the schedule)."""
    found = _all_connections(request) if disconnected else _connections(request)
    connection = found.select_related("user").filter(pk=connection_id).first()
    if connection is None:
        raise Http404("No such connection.")
    return connection


def _team_settings(request: TeamRequest) -> TeamSyncSettings:
    found = TeamSyncSettings.objects.filter(team=request.team).first()
    return found or TeamSyncSettings(team=request.team)


@require_GET
@team_view()
def overview(request: TeamRequest) -> HttpResponse:
    now = timezone.now()
    rows = []
    for connection in _connections(request).select_related("user").order_by("kind", "tenant"):
        schedule = SyncSchedule.objects.filter(connection=connection).first()
        syncs = may_sync(connection)
        rows.append(
            {
                "connection": connection,
                "schedule": schedule,
                "syncs": syncs,
                "sentence": sync_sentence(connection, schedule, syncs=syncs, now=now),
                "stale": bool(schedule and schedule.is_stale(now)),
                "last_run": SyncRun.objects.filter(connection=connection).first(),
            }
        )
    disconnected = (
        _all_connections(request)
        .filter(status=Connection.Status.DISCONNECTED, sync_runs__isnull=False)
        .distinct()
        .order_by("tenant", "kind")
    )
    return render(
        request,
        "sync/overview.html",
        {
            "team": request.team,
            "rows": rows,
            "disconnected": disconnected,
            "is_admin": request.membership.is_admin,
            "settings_form": TeamSyncSettingsForm(instance=_team_settings(request)),
        },
    )


@require_POST
@team_view(admin=True)
def team_settings(request: TeamRequest) -> HttpResponse:
    form = TeamSyncSettingsForm(request.POST, instance=_team_settings(request))
    if form.is_valid():
        form.save()
        messages.success(request, "The team's sync settings were saved.")
    else:
        messages.error(request, "The sync settings could not be saved.")
    return redirect("sync:overview", team_slug=request.team.slug)


@require_GET
@team_view()
def history(request: TeamRequest, connection_id: UUID) -> HttpResponse:
    connection = _connection_or_404(request, connection_id, disconnected=True)
    schedule = SyncSchedule.objects.filter(connection=connection).first()
    syncs = may_sync(connection)
    runs = Paginator(SyncRun.objects.filter(connection=connection), RUNS_PER_PAGE)
    page = runs.get_page(request.GET.get("page"))
    current = SyncRun.objects.filter(connection=connection, status__in=SyncRun.UNFINISHED).first()
    return render(
        request,
        "sync/history.html",
        {
            "team": request.team,
            "connection": connection,
            "schedule": schedule,
            "schedule_form": ScheduleForm.for_schedule(schedule),
            "stale": bool(connection.is_live and schedule and schedule.is_stale()),
            "syncs": syncs,
            "sentence": sync_sentence(connection, schedule, syncs=syncs),
            "read_only": not connection.is_live,
            "page": page,
            "current": current,
            "is_admin": request.membership.is_admin,
        },
    )


@require_POST
@team_view(admin=True)
def sync_now(request: TeamRequest, connection_id: UUID) -> HttpResponse:
    connection = _connection_or_404(request, connection_id)
    if not may_sync(connection):
        schedule = SyncSchedule.objects.filter(connection=connection).first()
        messages.error(request, sync_sentence(connection, schedule, syncs=False))
        return redirect("sync:history", team_slug=request.team.slug, connection_id=connection.pk)
    requested = scheduling.request_sync(connection, user=request.user)
    if requested.created:
        messages.success(request, "The sync is queued; this page shows its progress.")
    else:
        messages.info(request, "A sync of this connection is already queued or running.")
    return redirect("sync:history", team_slug=request.team.slug, connection_id=connection.pk)


@require_POST
@team_view(admin=True)
def schedule(request: TeamRequest, connection_id: UUID) -> HttpResponse:
    connection = _connection_or_404(request, connection_id)
    form = ScheduleForm(request.POST)
    if form.is_valid():
        current = scheduling.schedule_for(connection)
        form.apply(current)
        messages.success(request, "The schedule was saved.")
    else:
        messages.error(
            request, "; ".join(str(e) for errors in form.errors.values() for e in errors)
        )
    return redirect("sync:history", team_slug=request.team.slug, connection_id=connection.pk)


@require_GET
@team_view()
def progress(request: TeamRequest, run_id: int) -> JsonResponse:
    run = SyncRun.objects.filter(pk=run_id, connection__in=_all_connections(request)).first()
    if run is None:
        raise Http404("No such sync run.")
    response = JsonResponse(run.progress_dict())
    response["Cache-Control"] = "no-store"
    return response


def _research(request: TeamRequest) -> QuerySet[ResearchDocument]:
    """The team's live documents the viewer may read (one row per document)."""
    return ResearchDocument.objects.filter(
        research_visible_to(request.team, request.user), deleted_at__isnull=True
    )


def _content_types(request: TeamRequest) -> dict[str, str]:
    """Content type id -> name, from the connections whose research the viewer may read, so
    that the filter never names a content type only someone else's connection brought (the
    lists are one per connection: the same type read by two connections is one choice)."""
    return {
        ct.bipsync_id: str(ct)
        for ct in SyncedContentType.objects.filter(
            team=request.team,
            connection__in=research_sources(request.team, request.user),
            deleted_at__isnull=True,
        ).order_by("display_name")
    }


def _author_labels(request: TeamRequest, documents: QuerySet[ResearchDocument]) -> dict[str, str]:
    """Bipsync user id -> what to call that author, for the first 500 authors by id.

    The REST slice gives a document's ``user`` as an id (the name only when it sends an object).
    The users resource (GraphQL ``users:read``) names them; and the team knows the people it
    connected: a token response names its subject, kept as the connection's ``subject_name``.
    So: the name sent with a document, else the synced user's, else a connected subject's
    name, else the id. Two authors with one name keep apart by the end of their ids.
    """
    names = dict(browse.author_names(documents, 500))
    unnamed = [bid for bid, name in names.items() if not name]
    # The users resource (GraphQL users:read) names them when the connection may read it.
    users = dict(
        SyncedUser.objects.filter(
            team=request.team, bipsync_id__in=unnamed, deleted_at__isnull=True
        )
        .exclude(name="")
        .values_list("bipsync_id", "name")
    )
    subjects = dict(
        Connection.objects.filter(team=request.team, subject_id__in=unnamed)
        .exclude(subject_name="")
        .values_list("subject_id", "subject_name")
    )
    labels = {
        bid: name or users.get(bid) or subjects.get(bid) or bid for bid, name in names.items()
    }
    counts = Counter(labels.values())
    return {
        bid: f"{label} (…{bid[-6:]})" if counts[label] > 1 else label
        for bid, label in labels.items()
    }


@require_GET
@team_view()
def research(request: TeamRequest) -> HttpResponse:
    documents = _research(request)
    content_types = _content_types(request)
    authors = _author_labels(request, documents)
    form = ResearchFilterForm(
        request.GET or None,
        content_types=content_types,
        authors=list(authors.items()),
        companies=lambda text: companies.matching(request.team, text),
    )
    page: browse.Page | None = None
    page_error = ""
    if not form.is_bound or form.is_valid():
        data: dict[str, Any] = form.cleaned_data if form.is_bound else {}
        try:
            page = _research_page(request, browse.filtered(documents, data))
        except browse.PageError as exc:
            page_error = str(exc)
    if page is not None:
        sources = list(research_sources(request.team, request.user).select_related("user"))
        stale = staleness(list(page.object_list), sources)
        tags = companies.labels(
            request.team,
            (
                bid
                for doc in page.object_list
                for value in doc.lookup_fields.values()
                for bid in companies.ids_in(value)
            ),
        )
        for doc in page.object_list:
            doc.companies = _companies_of(doc, tags)  # type: ignore[attr-defined]
            # What the template shows as the author (not a model field).
            doc.author_label = authors.get(doc.author_bid) or doc.author_name or doc.author_bid  # type: ignore[attr-defined]
            doc.bipsync_url = bipsync_url(doc)  # type: ignore[attr-defined]
            doc.stale = stale.get(doc.pk)  # type: ignore[attr-defined]
    query = request.GET.copy()
    for name in ("page", "after", "before"):
        query.pop(name, None)
    return render(
        request,
        "sync/research.html",
        {
            "team": request.team,
            "form": form,
            "page": page,
            "page_error": page_error,
            "links": _page_links(page, query.urlencode()) if page else {},
            "content_types": content_types,
        },
        # Bad filters show their sentence and no documents: never the unfiltered list.
        status=200 if page is not None else 400,
    )


def _companies_of(doc: ResearchDocument, tags: dict[str, str]) -> list[str]:
    """The named companies a document's lookup fields hold, each once, in field order."""
    found = (
        tags[bid]
        for value in doc.lookup_fields.values()
        for bid in companies.ids_in(value)
        if bid in tags
    )
    return list(dict.fromkeys(found))


def _research_page(request: TeamRequest, documents: QuerySet[ResearchDocument]) -> browse.Page:
    return browse.page(
        documents,
        number=request.GET.get("page"),
        after=request.GET.get("after"),
        before=request.GET.get("before"),
        per_page=DOCUMENTS_PER_PAGE,
        limit=browse.exact_count_limit(),
    )


def _page_links(page: browse.Page, query: str) -> dict[str, str]:
    """The pager's links: the filters' query string plus each link's page parameters."""
    links: dict[str, str] = {}
    for name in ("first", "previous", "next", "last"):
        params = getattr(page, name)
        if params is not None:
            links[name] = "?" + "&".join(p for p in (query, urlencode(params)) if p)
    return links


HISTORY_SHOWN = 100


@require_GET
@team_view()
def document(request: TeamRequest, document_id: int) -> HttpResponse:
    """One document: its fields, author, the connections it is seen through, the changes syncs
    saw, and its link to Bipsync. A document the viewer may not read is a 404, as one that does
    not exist (another team's, or another member's private one)."""
    doc = ResearchDocument.objects.filter(
        research_visible_to(request.team, request.user), pk=document_id
    ).first()
    if doc is None:
        raise Http404("No such document.")
    sources = list(research_sources(request.team, request.user).select_related("user"))
    seen_through = [
        c for c in sources if DocumentSighting.objects.filter(document=doc, connection=c).exists()
    ]
    names = {
        f.api_identifier: f.name
        for f in SyncedField.objects.filter(
            team=request.team, tenant=doc.tenant, connection__in=sources
        ).exclude(api_identifier="")
    }
    tags = companies.labels(
        request.team,
        (bid for value in doc.lookup_fields.values() for bid in companies.ids_in(value)),
    )
    fields = [
        (names.get(key) or key, _field_text(value, tags))
        for key, value in sorted(doc.lookup_fields.items())
    ]
    body = NoteBody.objects.filter(
        team=request.team, tenant=doc.tenant, bipsync_id=doc.bipsync_id, deleted_at__isnull=True
    ).first()
    labels = {str(c.pk): str(c) for c in sources}
    history = [
        (change, labels.get(str(change.connection_id), "a connection you cannot see"))
        for change in doc.changes.all()[:HISTORY_SHOWN]
    ]
    authors = _author_labels(request, ResearchDocument.objects.filter(pk=doc.pk))
    return render(
        request,
        "sync/document.html",
        {
            "team": request.team,
            "doc": doc,
            "content_type": _content_types(request).get(doc.content_type_bid, ""),
            "author": authors.get(doc.author_bid) or doc.author_name or doc.author_bid,
            "fields": fields,
            "history": history,
            "seen_through": seen_through,
            "stale": staleness([doc], sources).get(doc.pk),
            "bipsync_url": bipsync_url(doc),
            "body": sanitised(body.content) if body is not None else None,
            "attachments": _attachments(doc),
        },
    )


def _field_text(value: object, tags: dict[str, str]) -> object:
    """A field's value with the companies it names by name and ticker (an id stays an id
    when the categories resource does not know it)."""
    if isinstance(value, str) and value in tags:
        return tags[value]
    if isinstance(value, list) and any(isinstance(v, str) and v in tags for v in value):
        return ", ".join(tags.get(v, str(v)) if isinstance(v, str) else str(v) for v in value)
    return value


def _attachments(doc: ResearchDocument) -> QuerySet[SyncedAttachment]:
    return SyncedAttachment.objects.filter(
        team_id=doc.team_id, tenant=doc.tenant, document_bid=doc.bipsync_id, deleted_at__isnull=True
    )


@require_GET
@team_view()
def attachment(request: TeamRequest, document_id: int, attachment_id: str) -> HttpResponseBase:
    """An attachment's bytes, streamed from Bipsync, for someone who may read its document (a
    404 otherwise, as for the document page)."""
    doc = ResearchDocument.objects.filter(
        research_visible_to(request.team, request.user), pk=document_id
    ).first()
    found = _attachments(doc).filter(bipsync_id=attachment_id).first() if doc else None
    if doc is None or found is None:
        raise Http404("No such attachment.")
    sources = list(research_sources(request.team, request.user))
    reader = downloads.reader(doc, sources)
    if reader is None:
        return HttpResponse(
            "The document is seen only through connections that need reconnecting; reconnect "
            "one to download its attachments.",
            status=409,
            content_type="text/plain; charset=utf-8",
        )
    return downloads.stream(found, reader)
