"""What the API takes and gives, as pydantic models (ninja's ``Schema``): the OpenAPI document
is generated from these."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from ninja import Field, Schema


class ProblemOut(Schema):
    """An RFC 9457 problem."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[dict[str, str]] | None = None


# --- connections -------------------------------------------------------------------------------


class LastSyncOut(Schema):
    id: int
    status: str
    trigger: str
    queued_at: datetime
    finished_at: datetime | None
    seen: int
    error: str


class ConnectionOut(Schema):
    id: UUID
    kind: str
    tenant: str
    label: str
    subject_name: str
    status: str
    status_sentence: str
    #: "" when healthy; else needs_reconnect, failing, sync_failed, stale or disconnected.
    problem: str
    #: What is wrong or right, in a sentence.
    health: str
    needs_person: bool = Field(description="Someone has to act (reconnect, look at a failure).")
    syncs: bool
    sync_sentence: str
    next_sync_at: datetime | None
    last_sync: LastSyncOut | None
    scopes: list[str]


class ConnectionList(Schema):
    items: list[ConnectionOut]


class SyncRequestedOut(Schema):
    run_id: int
    status: str
    created: bool = Field(description="False: a sync of this connection was already queued.")
    detail: str


# --- research ----------------------------------------------------------------------------------


class ResearchOut(Schema):
    id: int
    bipsync_id: str
    tenant: str
    title: str
    content_type: str
    author_id: str
    author_name: str
    fields: dict[str, Any]
    bipsync_created: datetime | None
    bipsync_modified: datetime | None
    first_synced_at: datetime
    changed_at: datetime
    url: str


class ResearchPage(Schema):
    items: list[ResearchOut]
    next_cursor: str | None = Field(description="Pass as `after` for the next page; null: end.")


# --- the resources read through GraphQL --------------------------------------------------------


class UserOut(Schema):
    id: int
    bipsync_id: str
    tenant: str
    name: str
    email: str
    first_synced_at: datetime
    changed_at: datetime


class UserPage(Schema):
    items: list[UserOut]
    next_cursor: str | None = Field(description="Pass as `after` for the next page; null: end.")


class ClassificationOut(Schema):
    bipsync_id: str
    name: str = Field(description="Empty when the classification is not synced.")


class CategoryOut(Schema):
    id: int
    bipsync_id: str
    tenant: str
    name: str
    ticker: str
    classification: ClassificationOut | None
    external_ids: dict[str, Any] | list[Any]
    first_synced_at: datetime
    changed_at: datetime


class CategoryPage(Schema):
    items: list[CategoryOut]
    next_cursor: str | None = Field(description="Pass as `after` for the next page; null: end.")


class ContactOut(Schema):
    id: int
    bipsync_id: str
    tenant: str
    name: str
    email: str
    external_ids: dict[str, Any] | list[Any]
    first_synced_at: datetime
    changed_at: datetime


class ContactPage(Schema):
    items: list[ContactOut]
    next_cursor: str | None = Field(description="Pass as `after` for the next page; null: end.")


class ProjectOut(Schema):
    id: int
    bipsync_id: str
    tenant: str
    name: str
    stage: str
    external_ids: dict[str, Any] | list[Any]
    first_synced_at: datetime
    changed_at: datetime


class ProjectPage(Schema):
    items: list[ProjectOut]
    next_cursor: str | None = Field(description="Pass as `after` for the next page; null: end.")


# --- the change feed ---------------------------------------------------------------------------


class ChangeOut(Schema):
    id: int
    cursor: str = Field(description="The position just past this entry.")
    resource: str = Field(
        description=(
            "What changed: research, users, classifications, categories, contacts, projects, "
            "note_bodies (keyed by their document's Bipsync id) or attachments."
        )
    )
    tenant: str
    bipsync_id: str
    action: Literal["created", "changed", "deleted"]
    row_id: int
    path: str | None = Field(
        description=(
            "Where the API serves the row (its list's detail endpoint), or null for a resource "
            "the API does not serve by itself and for a deleted row."
        )
    )
    created: datetime


class ChangePage(Schema):
    entries: list[ChangeOut]
    next_cursor: str
    has_more: bool


# --- writes ------------------------------------------------------------------------------------


class AttachmentIn(Schema):
    file_name: str = Field(min_length=1, max_length=200)
    content_base64: str = Field(min_length=1, description="The file's bytes, base64 (RFC 4648).")


class NoteIn(Schema):
    external_id: str = Field(min_length=1, max_length=200)
    title: str = Field(max_length=500)
    content: str = ""
    content_type: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    author: str | None = None
    connection_id: UUID | None = None
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=20)


class UpsertIn(Schema):
    kind: Literal["category", "contact", "project"]
    source: str = Field(min_length=1, max_length=100)
    value: str = Field(min_length=1, max_length=200)
    document_type: str | None = None
    properties: dict[str, Any]
    connection_id: UUID | None = None


class AttachmentOut(Schema):
    id: UUID
    file_name: str
    status: str
    error: str


class WriteOut(Schema):
    id: UUID
    kind: str
    status: str
    attempts: int
    bipsync_id: str
    error: str
    link: str = Field(description="The note in Bipsync once delivered; else empty.")
    created: datetime
    finished_at: datetime | None
    attachments: list[AttachmentOut]
