"""Turning Bipsync items into the columns of synced rows."""

from __future__ import annotations

import re
from typing import Any

BIPSYNC_ID = re.compile(r"^[0-9a-f]{24}$")


def valid_id(value: object) -> str | None:
    return value if isinstance(value, str) and BIPSYNC_ID.fullmatch(value) else None


def ref(value: object) -> tuple[str, str]:
    """(id, display name) of a reference that may be an id or an object."""
    if isinstance(value, dict):
        ref_id = value.get("id") or value.get("_id") or ""
        name = value.get("name") or value.get("displayName") or ""
        if not name:
            first, last = value.get("firstName") or "", value.get("lastName") or ""
            name = f"{first} {last}".strip() or value.get("email") or ""
        return str(ref_id)[:64], str(name)[:200]
    if isinstance(value, str):
        return value[:64], ""
    return "", ""


#: ISO-8601 date-times as Bipsync writes them; Postgres parses these itself.
_ISO_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?"
)


def iso(value: object) -> str | None:
    """The timestamp as given when it is well-formed ISO 8601, else None: it goes to Postgres
    as text (re-parsing 200 timestamps a page in Python cost more than the rest of the row)."""
    if isinstance(value, str) and _ISO_DATETIME.fullmatch(value):
        return value
    return None


def document_row(bid: str, digest: str, item: dict[str, Any]) -> dict[str, Any]:
    """The columns of a document row that come from the item, JSON-ready."""
    content_type, _ = ref(item.get("contentType"))
    author_id, author_name = ref(item.get("user"))
    fields = item.get("fields")
    return {
        "bipsync_id": bid,
        "title": str(item.get("title") or ""),
        "content_type_bid": content_type,
        "author_bid": author_id,
        "author_name": author_name,
        "lookup_fields": fields if isinstance(fields, dict) else {},
        "bipsync_created": iso(item.get("created")),
        "bipsync_modified": iso(item.get("modified")),
        "content_hash": digest,
    }


def content_type_columns(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": str(item.get("name") or "")[:200],
        "display_name": str(item.get("displayName") or item.get("name") or "")[:200],
    }


def field_columns(item: dict[str, Any]) -> dict[str, Any]:
    content_type, _ = ref(item.get("contentType"))
    order = item.get("order")
    options = item.get("options")
    return {
        "api_identifier": str(item.get("apiIdentifier") or "")[:200],
        "name": str(item.get("name") or "")[:200],
        "field_type": str(item.get("fieldType") or "")[:64],
        "options": options if isinstance(options, list | dict) else [],
        "content_type_bid": content_type,
        "order": order if isinstance(order, int) and not isinstance(order, bool) else None,
        "disabled": bool(item.get("disabled")),
    }
