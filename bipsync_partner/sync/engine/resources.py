"""Reading the declared resources (bipsync_partner/sync/resources.py) in a run, after research.

The same rules as research's scan (:mod:`bipsync_partner.sync.engine`), for every resource:

- each row is hashed (SHA-256 of its node's canonical JSON) and only new, changed or returning
  rows are written, one upsert per page; an unchanged re-sync writes no row;
- each page's ids (:class:`~bipsync_partner.sync.models.ResourceScanPage`), the resource's
  checkpoint (the page's ``endCursor``) and counts commit with the page, so a run stopped at
  any point reads on from the last committed page;
- deletions are marked only after a complete scan (the last page says ``hasNextPage`` false
  and the nodes seen add up to ``totalCount``); an empty listing where rows are stored deletes
  nothing, and a deletion of more than SYNC_CONFIRM_DELETIONS_PERCENT of the stored rows waits
  for the next run's scan to agree;
- a resource the connection's grant does not cover (its scope missing, or Bipsync answering
  ``INSUFFICIENT_SCOPE``) is skipped with a sentence in the run's notes; a refused query is a
  note as well: research is synced whatever becomes of the resources.

Progress is kept in :attr:`SyncRun.resources`, which the history page shows.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from bipsync_partner.ops.interpreter import switch_interval
from bipsync_partner.sync.api import ApiError, BipsyncApi, InsufficientScope
from bipsync_partner.sync.engine.hashing import content_hash, json_text
from bipsync_partner.sync.engine.items import ISO_DATETIME_PATTERN, max_lengths, valid_id
from bipsync_partner.sync.engine.outcomes import SliceOver
from bipsync_partner.sync.engine.prefetch import PREFETCH_SWITCH_INTERVAL, Prefetch
from bipsync_partner.sync.engine.resource_sql import (
    SEEN_TABLE,
    item_fields,
    known_statement,
    mark_deleted_statement,
    stored_statement,
    upsert_statement,
)
from bipsync_partner.sync.graphql import GraphqlClient, GraphqlError, QueryLimitExceeded
from bipsync_partner.sync.models import ResourceScanPage, SyncRun
from bipsync_partner.sync.resources import Resource, enabled, value_at

log = logging.getLogger(__name__)

DONE, SKIPPED, READING = "done", "skipped", "reading"
_ISO = re.compile(ISO_DATETIME_PATTERN)
#: The GraphQL error code for a field whose scope the token lacks (the sandbox's [choice],
#: docs/bipsync.md "GraphQL").
INSUFFICIENT_SCOPE = "INSUFFICIENT_SCOPE"


def sync_resources(
    run: SyncRun,
    api: BipsyncApi,
    *,
    deadline: float | None = None,
    tick: Callable[[], None] | None = None,
) -> None:
    """Read every enabled resource the run has not finished yet (safe to call again: a finished
    or skipped resource is not read twice in one run). ``tick`` is called after every page (the
    slice renews its tenant slot there)."""
    client = GraphqlClient(api)
    lacking = []
    for resource in enabled():
        state = run.resources.get(resource.name) or {}
        if state.get("state") in (DONE, SKIPPED):
            continue
        missing = _missing_scopes(run, resource)
        if missing:
            lacking.append(f"{resource.label} ({', '.join(missing)})")
            _save_state(run, resource, {**state, "state": SKIPPED})
            continue
        try:
            _sync_one(run, client, resource, deadline, tick)
        except InsufficientScope:
            _skip(run, resource, f"the grant lacks the scope {' or '.join(resource.scopes)}")
        except GraphqlError as error:
            if INSUFFICIENT_SCOPE in _codes(error):
                _skip(run, resource, "the grant lacks a scope its query needs")
            else:
                _skip(run, resource, f"Bipsync refused its query ({_first_message(error)})")
        except ApiError as error:
            if error.transient:
                raise  # the run waits and reads on from the resource's checkpoint
            _skip(run, resource, error.sentence.rstrip("."))
    if lacking:
        # One sentence for them all: a grant of the REST scopes alone lacks every one.
        run.add_note(f"Not synced, as the grant lacks their scopes: {'; '.join(lacking)}.")
        run.save(update_fields=["notes"])


def _missing_scopes(run: SyncRun, resource: Resource) -> list[str]:
    scopes = run.connection.scope_list
    if resource.granted(scopes):
        return []
    return [s for s in (*resource.scopes, *resource.extra_scopes) if s not in scopes]


def _codes(error: GraphqlError) -> set[str]:
    codes = getattr(error, "codes", None)
    found = {str(c) for c in codes} if codes else set()
    return found | {str(error.code)}


def _first_message(error: GraphqlError) -> str:
    return str(error.sentence).rstrip(".")[:200]


def _save_state(run: SyncRun, resource: Resource, state: dict[str, Any]) -> None:
    run.resources = {**run.resources, resource.name: state}
    run.heartbeat_at = timezone.now()
    run.save(update_fields=["resources", "notes", "heartbeat_at"])


def _skip(run: SyncRun, resource: Resource, why: str) -> None:
    ResourceScanPage.objects.filter(run=run, resource=resource.name).delete()
    run.add_note(f"The {resource.label} were not synced: {why}.")
    state = dict(run.resources.get(resource.name) or {})
    state["state"] = SKIPPED
    _save_state(run, resource, state)
    log.info("Sync run %s skipped %s: %s", run.pk, resource.name, why)


def _sync_one(
    run: SyncRun,
    client: GraphqlClient,
    resource: Resource,
    deadline: float | None,
    tick: Callable[[], None] | None,
) -> None:
    conn = run.connection
    scopes = conn.scope_list
    state: dict[str, Any] = dict(run.resources.get(resource.name) or {})
    if state.get("state") != READING:
        # Decided once and kept with the checkpoint, as research's first scan is.
        empty = not resource.model._default_manager.filter(
            team_id=conn.team_id, tenant=conn.tenant
        ).exists()
        state = {
            "state": READING,
            "seen": 0,
            "rows": 0,
            "created": 0,
            "updated": 0,
            "deleted": 0,
            "pages": 0,
            "total": None,
            "after": None,
            "empty": empty,
            "complete": False,
        }
        _save_state(run, resource, state)
    query = resource.query(scopes)
    listings = _listings(
        client,
        resource,
        query,
        after=None if state["complete"] else state["after"],
        page_size=int(state.get("page_size") or settings.BIPSYNC_GRAPHQL_PAGE_SIZE),
        complete=bool(state["complete"]),
    )
    # The next pages are read while this one is written (as research's are), so the scan takes
    # about max(read, write) per page. Not for a resource whose rows may need reads of their
    # own (an inner connection read on by itself): those stay on this thread.
    fetcher = Prefetch(listings) if resource.each is None else None
    switching = (
        switch_interval(PREFETCH_SWITCH_INTERVAL)
        if fetcher is not None
        else contextlib.nullcontext()
    )
    try:
        with switching:
            for page_size, listing in fetcher if fetcher is not None else listings:
                if page_size != int(state.get("page_size") or settings.BIPSYNC_GRAPHQL_PAGE_SIZE):
                    state["page_size"] = page_size
                _store_listing(run, client, resource, state, scopes, listing)
                if tick is not None:
                    tick()
                if deadline is not None and time.monotonic() > deadline and not state["complete"]:
                    raise SliceOver
    finally:
        if fetcher is not None:
            fetcher.close()
    _conclude(run, resource, state)


def _listings(
    client: GraphqlClient,
    resource: Resource,
    query: str,
    *,
    after: str | None,
    page_size: int,
    complete: bool,
) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """(page size asked, connection listing) of the resource's pages from the checkpoint
    ``after`` to the last page (none if the scan is ``complete`` already)."""
    if complete:
        return
    while True:
        try:
            data = client.execute(query, {"first": page_size, "after": after})
        except QueryLimitExceeded:
            if page_size == 1:
                raise
            # Bipsync's limits (docs/bipsync.md, "GraphQL") bound a query by what it asks
            # for: a smaller page asks for less.
            page_size = max(1, page_size // 2)
            continue
        listing = value_at(data, resource.source) or {}
        yield page_size, listing
        info = listing.get("pageInfo") or {}
        if not info.get("hasNextPage") or not info.get("endCursor"):
            return
        after = info["endCursor"]


def _store_listing(
    run: SyncRun,
    client: GraphqlClient,
    resource: Resource,
    state: dict[str, Any],
    scopes: list[str],
    listing: Mapping[str, Any],
) -> None:
    edges = [e for e in listing.get("edges") or [] if isinstance(e, Mapping)]
    nodes: list[Mapping[str, Any]] = [
        e["node"] for e in edges if isinstance(e.get("node"), Mapping)
    ]
    info = listing.get("pageInfo") or {}
    rows = dict(_rows(client, resource, nodes, scopes))
    _store(run, resource, state, nodes, rows, listing.get("totalCount"), info)


def _rows(
    client: GraphqlClient, resource: Resource, nodes: list[Mapping[str, Any]], scopes: list[str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(Bipsync id, row) of a page's nodes (or of each node's inner connection's nodes)."""
    columns = _columns(resource)
    for node in nodes:
        if resource.each is None:
            if all(value_at(node, p) is not None for p in resource.required):
                row = _row(resource, columns, node, node)
                if row is not None:
                    yield row
            continue
        parent = valid_id(value_at(node, resource.key))
        if parent is None:
            continue
        for inner in _inner_nodes(client, resource, node, parent, scopes):
            row = _row(resource, columns, inner, {**inner, "__parent": parent})
            if row is not None:
                row[1][str(resource.parent_column)] = parent
                yield row


def _inner_nodes(
    client: GraphqlClient,
    resource: Resource,
    node: Mapping[str, Any],
    parent: str,
    scopes: list[str],
) -> Iterator[Mapping[str, Any]]:
    """The nodes of a node's inner connection: the first page came with the node; a node with
    more is read on by itself (rare: most documents have a few attachments)."""
    listing = value_at(node, str(resource.each)) or {}
    while True:
        for edge in listing.get("edges") or []:
            inner = edge.get("node") if isinstance(edge, Mapping) else None
            if isinstance(inner, Mapping):
                yield inner
        info = listing.get("pageInfo") or {}
        if not info.get("hasNextPage") or not info.get("endCursor"):
            return
        data = client.execute(
            resource.each_query(scopes),
            {"id": parent, "first": settings.BIPSYNC_GRAPHQL_PAGE_SIZE, "after": info["endCursor"]},
        )
        edges = (value_at(data, resource.source) or {}).get("edges") or []
        outer = edges[0].get("node") if edges and isinstance(edges[0], Mapping) else None
        listing = value_at(outer or {}, str(resource.each)) or {}


#: A resource's columns as a row takes them: (attname, field, the node's path).
Columns = list[tuple[str, "models.Field[Any, Any]", str]]


def _columns(resource: Resource) -> Columns:
    """Looked up once per page rather than once per row (a page has hundreds of rows)."""
    fields = {f.name: f for f in item_fields(resource.model)}
    return [
        (fields[column].attname, fields[column], value.path)
        for column, value in resource.values().items()
    ]


def _row(
    resource: Resource, columns: Columns, node: Mapping[str, Any], hashed: Mapping[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    bid = valid_id(value_at(node, resource.key))
    if bid is None:
        return None
    row: dict[str, Any] = {"bipsync_id": bid, "content_hash": content_hash(dict(hashed))}
    for attname, field, path in columns:
        row[attname] = _coerce(resource.model, field, value_at(node, path))
    return bid, row


def _coerce(model: type[models.Model], field: models.Field[Any, Any], value: Any) -> Any:
    """A node's value in the column's type: Bipsync's JSON is not trusted to match it, and one
    wrong type would fail the page's statement (a value that does not fit becomes empty)."""
    if isinstance(field, models.JSONField):
        return value if isinstance(value, (dict, list)) else {}
    if isinstance(field, (models.BigIntegerField, models.IntegerField)):
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(field, models.DateTimeField):
        return value if isinstance(value, str) and _ISO.match(value) else None
    text = value if isinstance(value, str) else ""
    limit = max_lengths(model)[field.name]
    return text[:limit] if limit is not None else text


def _store(
    run: SyncRun,
    resource: Resource,
    state: dict[str, Any],
    nodes: list[Mapping[str, Any]],
    rows: dict[str, dict[str, Any]],
    total: object,
    info: Mapping[str, Any],
) -> None:
    """Write a page's changed rows, its ids and the resource's checkpoint in one transaction."""
    conn = run.connection
    now = timezone.now()
    params: dict[str, Any] = {"team": conn.team_id, "tenant": conn.tenant, "now": now}
    known: dict[str, tuple[str, bool]] = {}
    connection.ensure_connection()
    if not state["empty"] and rows:
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(known_statement(resource.model), {**params, "ids": ",".join(rows)})
            known = {bid: (digest, gone) for bid, digest, gone in cursor}
    changed = [row for bid, row in rows.items() if known.get(bid) != (row["content_hash"], False)]
    created = updated = 0
    with transaction.atomic():
        if changed:
            with psycopg.Cursor(connection.connection) as cursor:
                cursor.execute(
                    upsert_statement(resource.model),
                    {**params, "connection": run.connection_id, "rows": json_text(changed)},
                )
                found = cursor.fetchone()
            created, updated = (int(found[0]), int(found[1])) if found else (0, 0)
        state["pages"] += 1
        ResourceScanPage.objects.create(
            run=run, resource=resource.name, seq=state["pages"], ids=list(rows)
        )
        state["seen"] += len(nodes)
        state["rows"] += len(rows)
        state["created"] += created
        state["updated"] += updated
        state["total"] = total if isinstance(total, int) and total >= 0 else None
        state["after"] = info.get("endCursor") or state["after"]
        state["complete"] = not info.get("hasNextPage") or not info.get("endCursor")
        _save_state(run, resource, state)


def _conclude(run: SyncRun, resource: Resource, state: dict[str, Any]) -> None:
    """Mark deleted what the complete scan did not see (within the limits above); the
    resource is done."""
    conn = run.connection
    now = timezone.now()
    params: dict[str, Any] = {
        "team": conn.team_id,
        "tenant": conn.tenant,
        "connection": run.connection_id,
        "now": now,
    }
    total = state["total"]
    with transaction.atomic():
        deferred = 0
        if total is not None and state["seen"] < total:
            run.add_note(
                f"The scan of {resource.label} saw {state['seen']} where Bipsync reported "
                f"{total}, so their deletions wait for a complete scan."
            )
        else:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"CREATE TEMPORARY TABLE {SEEN_TABLE} (bipsync_id varchar(24) PRIMARY KEY) "
                    "ON COMMIT DROP"
                )
                cursor.execute(
                    f"INSERT INTO {SEEN_TABLE} (bipsync_id) SELECT DISTINCT unnest(ids) "  # noqa: S608
                    f"FROM {ResourceScanPage._meta.db_table} WHERE run_id = %s AND resource = %s",
                    [run.pk, resource.name],
                )
                cursor.execute(f"ANALYZE {SEEN_TABLE}")
                cursor.execute(stored_statement(resource.model), params)
                stored, missing = cursor.fetchone() or (0, 0)
                if missing and missing == stored:
                    # As for research: a listing that lost everything is more often a fault
                    # than a tenant that deleted all of it.
                    run.add_note(
                        f"Bipsync listed none of the {stored} stored {resource.label}; they are "
                        "kept."
                    )
                elif missing * 100 > settings.SYNC_CONFIRM_DELETIONS_PERCENT * stored and (
                    _previous_deferred(run, resource) == 0
                ):
                    deferred = missing
                    run.add_note(
                        f"A scan found {missing} of the {stored} stored {resource.label} gone "
                        f"(more than {settings.SYNC_CONFIRM_DELETIONS_PERCENT}%); they are marked "
                        "deleted if the next sync finds them gone too."
                    )
                elif missing:
                    cursor.execute(mark_deleted_statement(resource.model), params)
                    state["deleted"] += cursor.rowcount
        ResourceScanPage.objects.filter(run=run, resource=resource.name).delete()
        state.update(state=DONE, deferred=deferred, after=None)
        _save_state(run, resource, state)
    log.info(
        "Sync run %s read %s: %d rows, %d created, %d updated, %d deleted",
        run.pk,
        resource.name,
        state["rows"],
        state["created"],
        state["updated"],
        state["deleted"],
    )


def _previous_deferred(run: SyncRun, resource: Resource) -> int:
    """How many deletions of the resource the connection's previous finished run deferred."""
    previous = (
        SyncRun.objects.filter(connection_id=run.connection_id, finished_at__isnull=False)
        .exclude(pk=run.pk)
        .order_by("-finished_at")
        .values_list("resources", flat=True)
        .first()
    )
    state = (previous or {}).get(resource.name) or {}
    return int(state.get("deferred") or 0)
