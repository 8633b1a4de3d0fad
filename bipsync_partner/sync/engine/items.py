"""Bipsync's items, parsed through one strict schema, and the columns of the rows they become.

Each item of ``/v1/research``, ``/v1/contenttype`` and ``/v1/field`` is converted by msgspec into
a :class:`ResearchItem`, :class:`ContentTypeItem` or :class:`FieldItem`: every field Bipsync
sends has one type (a string, an object, an integer; ``null`` allowed where it is optional), ids
are 24-hex, timestamps ISO 8601, and keys the partner does not use are ignored (the content
hash still covers them). An item that does not fit is not written (:func:`parse` returns None
and says why in the log). The string limits are the model fields' ``max_length``: a longer name
is cut there, as before, rather than losing the document.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Annotated, Any, TypeVar

import msgspec
from django.db import models

from bipsync_partner.sync.models import ResearchDocument, SyncedContentType, SyncedField

log = logging.getLogger(__name__)

BIPSYNC_ID_PATTERN = "^[0-9a-f]{24}$"
#: ISO-8601 date-times as Bipsync writes them; Postgres parses these itself (re-parsing 200
#: timestamps a page in Python cost more than the rest of the row).
ISO_DATETIME_PATTERN = (
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?$"
)

BipsyncId = Annotated[str, msgspec.Meta(pattern=BIPSYNC_ID_PATTERN)]
Timestamp = Annotated[str, msgspec.Meta(pattern=ISO_DATETIME_PATTERN)]


class Ref(msgspec.Struct, rename="camel"):
    """A reference given as an object (a content type, a user) rather than as its id."""

    id: str | None = None
    alt_id: str | None = msgspec.field(default=None, name="_id")
    name: str | None = None
    display_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None

    @property
    def ref_id(self) -> str:
        return self.id or self.alt_id or ""

    @property
    def label(self) -> str:
        full = f"{self.first_name or ''} {self.last_name or ''}".strip()
        return self.name or self.display_name or full or self.email or ""


Reference = str | Ref | None


class ResearchItem(msgspec.Struct, rename="camel"):
    """An item of ``GET /v1/research``."""

    id: BipsyncId
    title: str | None = None
    content_type: Reference = None
    user: Reference = None
    fields: dict[str, Any] | None = None
    created: Timestamp | None = None
    modified: Timestamp | None = None


class ContentTypeItem(msgspec.Struct, rename="camel"):
    """An item of ``GET /v1/contenttype``."""

    id: BipsyncId
    name: str | None = None
    display_name: str | None = None


class FieldItem(msgspec.Struct, rename="camel"):
    """An item of ``GET /v1/field``."""

    id: BipsyncId
    api_identifier: str | None = None
    name: str | None = None
    field_type: str | None = None
    options: list[Any] | dict[str, Any] | None = None
    content_type: Reference = None
    order: int | None = None
    disabled: bool | None = None


Item = TypeVar("Item", ResearchItem, ContentTypeItem, FieldItem)


_BIPSYNC_ID = re.compile(BIPSYNC_ID_PATTERN)


def valid_id(value: object) -> str | None:
    """The item's id when it is a Bipsync id (the schema's pattern), else None. Every item of
    every page is asked, so the pattern is matched directly: a quarter of the cost of
    converting the value through :data:`BipsyncId`."""
    return value if isinstance(value, str) and _BIPSYNC_ID.match(value) else None


def parse(schema: type[Item], item: object, *, near: int) -> Item | None:
    """The item through its schema, or None (logged, with the reason but not the content) when it
    does not fit."""
    try:
        return msgspec.convert(item, schema)
    except msgspec.ValidationError as error:
        log.warning("Skipped a %s near offset %d: %s", schema.__name__, near, error)
        return None


@functools.cache
def max_lengths(model: type[models.Model]) -> dict[str, int | None]:
    """Field name -> ``max_length`` (None for a column without a limit), read once per model."""
    return {field.name: getattr(field, "max_length", None) for field in model._meta.concrete_fields}


def _fit(model: type[models.Model], name: str, value: str | None) -> str:
    limit = max_lengths(model)[name]
    text = value or ""
    return text[:limit] if limit is not None else text


def _ref(model: type[models.Model], value: Reference, id_column: str) -> tuple[str, str]:
    """(id, display name) of a reference given as an id or as an object."""
    if isinstance(value, Ref):
        return _fit(model, id_column, value.ref_id), value.label
    return _fit(model, id_column, value), ""


def document_row(item: ResearchItem, digest: str) -> dict[str, Any]:
    """The columns of a document row that come from the item, JSON-ready (keyed by
    :func:`~bipsync_partner.sync.engine.sql.item_columns`)."""
    model = ResearchDocument
    content_type, _ = _ref(model, item.content_type, "content_type_bid")
    author_id, author_name = _ref(model, item.user, "author_bid")
    return {
        "bipsync_id": item.id,
        "title": _fit(model, "title", item.title),
        "content_type_bid": content_type,
        "author_bid": author_id,
        "author_name": _fit(model, "author_name", author_name),
        "lookup_fields": item.fields if item.fields is not None else {},
        "bipsync_created": item.created,
        "bipsync_modified": item.modified,
        "content_hash": digest,
    }


def content_type_columns(item: ContentTypeItem) -> dict[str, Any]:
    model = SyncedContentType
    return {
        "name": _fit(model, "name", item.name),
        "display_name": _fit(model, "display_name", item.display_name or item.name),
    }


def field_columns(item: FieldItem) -> dict[str, Any]:
    model = SyncedField
    content_type, _ = _ref(model, item.content_type, "content_type_bid")
    return {
        "api_identifier": _fit(model, "api_identifier", item.api_identifier),
        "name": _fit(model, "name", item.name),
        "field_type": _fit(model, "field_type", item.field_type),
        "options": item.options if item.options is not None else [],
        "content_type_bid": content_type,
        "order": item.order,
        "disabled": bool(item.disabled),
    }
