"""New research within a minute: between full scans, a short poll of the newest research.

Bipsync documents no modified-since filter, but GraphQL sorts research by creation time
(docs/bipsync.md, "GraphQL"). Every ``BIPSYNC_NEW_RESEARCH_POLL_SECONDS`` each syncing connection
reads its research newest first, a page of ``BIPSYNC_NEW_RESEARCH_POLL_PAGE_SIZE`` at a time,
and stops at the first document it already sees: usually one page, one request. What it finds
goes through the engine's path (:mod:`bipsync_partner.sync.engine.documents`). Edits and
deletions are left to the full scan, which also covers whatever the poll could not (a burst of
more than ``…_MAX_PAGES`` pages, a connection without GraphQL's scopes).

A connection whose first full scan has not run is not polled (the scan stores everything), nor
one whose full scan is running (its lock is held): the scan sees the new documents itself.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef

from bipsync_partner.connections.models import Connection
from bipsync_partner.coordination import OnceKeys
from bipsync_partner.sync.client import api_for
from bipsync_partner.sync.engine.documents import known_live, store_documents
from bipsync_partner.sync.engine.lock import lock_is_free
from bipsync_partner.sync.graphql import GraphqlClient, GraphqlError
from bipsync_partner.sync.models import DocumentSighting, may_sync, syncable_connections
from bipsync_partner.sync.research_graphql import (
    RESEARCH_NODE,
    UNAVAILABLE_CODES,
    connection_nodes,
    page_info,
    rest_item,
)

log = logging.getLogger(__name__)

NEWEST_QUERY = (
    "query NewestResearch($first: Int!, $after: String) {\n"
    "  research(first: $first, after: $after, sort: {by: CREATED_AT, direction: DESCENDING}) {\n"
    f"    edges {{ node {{ {RESEARCH_NODE} }} }}\n"
    "    pageInfo { hasNextPage endCursor }\n"
    "  }\n"
    "}"
)


@dataclass(frozen=True)
class Polled:
    requests: int = 0
    created: int = 0
    skipped: str = ""


def _markers() -> OnceKeys:
    return OnceKeys("fresh", ttl_seconds=max(1, int(settings.BIPSYNC_NEW_RESEARCH_POLL_SECONDS)))


def poll(connection_id: uuid.UUID | str) -> Polled:
    """Store the connection's research created since what it already sees."""
    try:
        return _poll(connection_id)
    finally:
        _markers().release([_markers().name(connection_id)])


def _poll(connection_id: uuid.UUID | str) -> Polled:
    conn = Connection.objects.filter(pk=connection_id).first()
    if conn is None or not may_sync(conn):
        return Polled(skipped="the connection does not sync")
    if not DocumentSighting.objects.filter(connection_id=conn.pk).exists():
        return Polled(skipped="no full scan has stored anything yet")
    if not lock_is_free(conn.pk):
        return Polled(skipped="a full scan is running")
    new: list[dict[str, Any]] = []
    requests = 0
    after: str | None = None
    with api_for(conn) as api:
        client = GraphqlClient(api)
        for _page in range(int(settings.BIPSYNC_NEW_RESEARCH_POLL_MAX_PAGES)):
            try:
                data = client.execute(
                    NEWEST_QUERY,
                    {"first": int(settings.BIPSYNC_NEW_RESEARCH_POLL_PAGE_SIZE), "after": after},
                    "NewestResearch",
                )
            except GraphqlError as error:
                if error.code in UNAVAILABLE_CODES:
                    return Polled(requests=requests + 1, skipped="GraphQL is not available")
                raise
            requests += 1
            items = [rest_item(node) for node in connection_nodes(data)]
            known = known_live(conn, [str(item["id"]) for item in items])
            fresh = _until_known(items, known)
            new.extend(fresh)
            more, after = page_info(data)
            if len(fresh) < len(items) or not more or after is None:
                break
    if not new:
        return Polled(requests=requests)
    with transaction.atomic():
        stored = store_documents(conn, new)
    log.info("New research: %d documents stored in %d requests", stored.created, requests)
    return Polled(requests=requests, created=stored.created)


def _until_known(items: list[dict[str, Any]], known: set[str]) -> list[dict[str, Any]]:
    """The items before the first one the connection already sees (newest first)."""
    fresh = []
    for item in items:
        if item["id"] in known:
            break
        fresh.append(item)
    return fresh


def sweep() -> int:
    """Queue a poll for each syncing connection that has stored research (once at a time:
    a poll still queued or running is not queued again); how many were queued."""
    from bipsync_partner.sync.tasks import poll_new_research_task

    has_sightings = DocumentSighting.objects.filter(connection_id=OuterRef("pk"))
    ids = [
        str(pk)
        for pk in syncable_connections().filter(Exists(has_sightings)).values_list("pk", flat=True)
    ]
    keys = _markers()
    claimed = keys.claim_many([keys.name(pk) for pk in ids])
    queued = [pk for pk, got in zip(ids, claimed, strict=True) if got]

    def publish() -> None:
        for pk in queued:
            poll_new_research_task.delay(pk)

    transaction.on_commit(publish)
    return len(queued)
