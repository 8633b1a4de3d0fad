"""What the research pages show of a document beyond its row: its address in Bipsync, and
whether what the viewer sees of it is stale (only connections that need reconnecting see it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from django.conf import settings

from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.visibility import is_usable
from bipsync_partner.sync.models import DocumentSighting, ResearchDocument, SyncSchedule


class HasBipsyncId(Protocol):
    @property
    def tenant(self) -> str: ...
    @property
    def bipsync_id(self) -> str: ...


def bipsync_url(document: ResearchDocument | HasBipsyncId) -> str:
    """The document in Bipsync's web app: the tenant's web host (BIPSYNC_WEB_BASE_TEMPLATE,
    from a validated tenant slug) and BIPSYNC_DOCUMENT_URL_PATH (docs/bipsync.md, settings)."""
    host = settings.BIPSYNC_WEB_BASE_TEMPLATE.format(tenant=document.tenant).rstrip("/")
    return host + settings.BIPSYNC_DOCUMENT_URL_PATH.format(id=document.bipsync_id)


@dataclass(frozen=True)
class Staleness:
    """The viewer sees the document only through connections that do not read Bipsync now:
    ``connection`` is the one to reconnect, ``since`` its last successful sync (or when it
    was connected, if it never synced)."""

    connection: Connection
    since: datetime


def staleness(documents: list[ResearchDocument], sources: list[Connection]) -> dict[int, Staleness]:
    """Document id -> its staleness, for the documents the viewer sees only through sources
    that need reconnecting (or are otherwise not usable). One query for the sightings of the
    page's documents, one for the schedules; nothing when every source is usable."""
    unusable = {c.pk: c for c in sources if not is_usable(c)}
    if not unusable or not documents:
        return {}
    usable_ids = [c.pk for c in sources if is_usable(c)]
    by_document: dict[int, list[Any]] = {}
    for document_id, connection_id in DocumentSighting.objects.filter(
        document__in=[d.pk for d in documents],
        connection_id__in=[*usable_ids, *unusable],
    ).values_list("document_id", "connection_id"):
        by_document.setdefault(document_id, []).append(connection_id)
    last_success = dict(
        SyncSchedule.objects.filter(connection__in=list(unusable)).values_list(
            "connection_id", "last_success_at"
        )
    )
    found = {}
    for document_id, connection_ids in by_document.items():
        if any(cid not in unusable for cid in connection_ids):
            continue
        conn = unusable[sorted(connection_ids, key=str)[0]]
        found[document_id] = Staleness(conn, last_success.get(conn.pk) or conn.created)
    return found
