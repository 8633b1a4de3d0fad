"""Rules-engine webhooks as a hint: "these documents may have changed, look again".

A customer's Bipsync Rules engine calls the connection's address with a body it renders from a
template (docs/bipsync.md, "Webhooks"); nothing is signed. So the body is trusted for nothing but
the 24-hex ids in it (JSON or XML alike, the template is the customer's), bounded in size and
number, and each call is counted per connection in Redis. A task then asks Bipsync itself, with
the connection's own token, for exactly those documents (GraphQL ``research(filter: {id: {in:
…}})``) and stores what it answers through the engine's path; those it does not answer are no
longer seen by the connection (deleted, or no longer visible to its token). A forged body naming
a document the token cannot read therefore stores nothing.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from bipsync_partner import coordination
from bipsync_partner.connections.models import Connection
from bipsync_partner.sync.client import api_for
from bipsync_partner.sync.engine.documents import store_documents, unsight
from bipsync_partner.sync.engine.items import valid_id
from bipsync_partner.sync.graphql import GraphqlClient, GraphqlError
from bipsync_partner.sync.models import may_sync
from bipsync_partner.sync.research_graphql import (
    RESEARCH_NODE,
    UNAVAILABLE_CODES,
    connection_nodes,
    rest_item,
)

log = logging.getLogger(__name__)

_ID = re.compile(rb"(?<![0-9A-Za-z])[0-9a-f]{24}(?![0-9A-Za-z])")

HINT_QUERY = (
    "query DocumentsHinted($ids: [ID!]!, $first: Int!) {\n"
    "  research(first: $first, filter: {id: {in: $ids}}) {\n"
    f"    edges {{ node {{ {RESEARCH_NODE} }} }}\n"
    "  }\n"
    "}"
)


def document_ids(body: bytes, limit: int) -> list[str]:
    """The distinct 24-hex ids in ``body``, in order, at most ``limit``."""
    seen: dict[str, None] = {}
    for match in _ID.finditer(body):
        seen.setdefault(match.group().decode("ascii"), None)
        if len(seen) >= limit:
            break
    return list(seen)


class TooManyHints(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__("too many webhook calls")
        self.retry_after = max(1, retry_after)


def count_call(connection_id: uuid.UUID) -> None:
    """Count a call in the connection's window; :class:`TooManyHints` over the bound. Raises
    ``redis.RedisError`` when Redis cannot count (the caller answers 503: the task could not be
    queued either, the broker being Redis)."""
    window = int(settings.BIPSYNC_WEBHOOK_RATE_WINDOW_SECONDS)
    name = coordination.key("webhook-rate", connection_id)
    with coordination.client().pipeline(transaction=True) as pipe:
        pipe.set(name, 0, ex=window, nx=True)
        pipe.incr(name)
        pipe.ttl(name)
        _, count, ttl = pipe.execute()
    if int(count) > int(settings.BIPSYNC_WEBHOOK_RATE_LIMIT):
        raise TooManyHints(int(ttl) if int(ttl) > 0 else window)


def queue_refetch(connection_id: uuid.UUID, ids: list[str]) -> None:
    from bipsync_partner.sync.tasks import refetch_documents_task

    connection = str(connection_id)
    transaction.on_commit(lambda: refetch_documents_task.delay(connection, ids))


@dataclass(frozen=True)
class Refetched:
    stored: int = 0
    unseen: int = 0
    skipped: str = ""


def refetch(connection_id: uuid.UUID | str, ids: list[str]) -> Refetched:
    """Ask Bipsync for ``ids`` with the connection's token and store its answer."""
    conn = Connection.objects.filter(pk=connection_id).first()
    if conn is None or not may_sync(conn):
        return Refetched(skipped="the connection does not sync")
    wanted = [bid for bid in dict.fromkeys(ids) if valid_id(bid)]
    wanted = wanted[: int(settings.BIPSYNC_WEBHOOK_MAX_IDS)]
    if not wanted:
        return Refetched(skipped="no document ids")
    with api_for(conn) as api:
        try:
            data = GraphqlClient(api).execute(
                HINT_QUERY, {"ids": wanted, "first": len(wanted)}, "DocumentsHinted"
            )
        except GraphqlError as error:
            if error.code in UNAVAILABLE_CODES:
                log.info("Webhook hint not followed: %s", error.sentence)
                return Refetched(skipped="GraphQL is not available to this connection")
            raise
    found = {item["id"]: item for item in map(rest_item, connection_nodes(data))}
    if not set(found) <= set(wanted):
        # The filter was not applied: what is absent from the answer says nothing.
        log.warning("Bipsync answered a filtered query with other documents; hint ignored")
        return Refetched(skipped="the answer was not filtered")
    with transaction.atomic():
        stored = store_documents(conn, list(found.values()))
        unseen = unsight(conn, [bid for bid in wanted if bid not in found])
    log.info(
        "Webhook hint: %d documents asked, %d created, %d updated, %d no longer seen",
        len(wanted),
        stored.created,
        stored.updated,
        unseen,
    )
    return Refetched(stored=stored.created + stored.updated, unseen=unseen)
