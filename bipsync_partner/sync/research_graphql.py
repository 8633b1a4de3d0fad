"""Research read through GraphQL, in the shape ``GET /v1/research`` gives it.

The full scan reads the REST listing; the poll for new research and the webhook hints read
GraphQL (the only API that sorts by creation or filters by id, docs/bipsync.md, "GraphQL").
Both views of a document must hash alike, or the next full scan would rewrite every document
the poll stored: a node is therefore reduced to the REST item's members, references to their
ids (the REST slice gives ``contentType`` and ``user`` as ids).
"""

from __future__ import annotations

from typing import Any

#: The members of a research node the partner stores (with references as ``{ id }``).
RESEARCH_NODE = "id title contentType { id } user { id } fields created modified"

#: GraphQL error codes saying the connection cannot use GraphQL for this (a missing scope):
#: the caller leaves the work to the full scan.
UNAVAILABLE_CODES = frozenset({"INSUFFICIENT_SCOPE", "FORBIDDEN", "UNAUTHENTICATED"})


def _ref_id(value: object) -> object:
    if isinstance(value, dict):
        return value.get("id")
    return value


def rest_item(node: dict[str, Any]) -> dict[str, Any]:
    """A research node as the REST listing's item (``id``, ``title``, ``contentType``, ``user``,
    ``fields``, ``created``, ``modified``)."""
    return {
        "id": node.get("id"),
        "title": node.get("title"),
        "contentType": _ref_id(node.get("contentType")),
        "user": _ref_id(node.get("user")),
        "fields": node.get("fields"),
        "created": node.get("created"),
        "modified": node.get("modified"),
    }


def connection_nodes(data: dict[str, Any], field: str = "research") -> list[dict[str, Any]]:
    """The nodes of a Relay connection in ``data`` (edges without a node object are skipped)."""
    root = data.get(field) if isinstance(data, dict) else None
    edges = root.get("edges") if isinstance(root, dict) else None
    if not isinstance(edges, list):
        return []
    nodes = (edge.get("node") for edge in edges if isinstance(edge, dict))
    return [node for node in nodes if isinstance(node, dict)]


def page_info(data: dict[str, Any], field: str = "research") -> tuple[bool, str | None]:
    """(hasNextPage, endCursor) of the connection in ``data``."""
    root = data.get(field) if isinstance(data, dict) else None
    info = root.get("pageInfo") if isinstance(root, dict) else None
    if not isinstance(info, dict):
        return False, None
    cursor = info.get("endCursor")
    return bool(info.get("hasNextPage")), cursor if isinstance(cursor, str) else None
