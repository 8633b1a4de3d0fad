"""The resources a sync reads through Bipsync's GraphQL after the research, each declared once.

A declaration names where the rows come from (a root connection of the GraphQL schema,
docs/bipsync.md "GraphQL"), the scope it needs, the local model, and which column takes which
value of a node (a dotted path). The query is written from the declaration; the engine
(:mod:`bipsync_partner.sync.engine.resources`) pages it, hashes each row, writes only what changed
and marks deleted what a complete scan no longer saw, for every resource alike.

Research itself stays on its REST path (:mod:`bipsync_partner.sync.engine`): its rows, sightings
and history are the product's core, and the REST listing is what Bipsync documents for a sync.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from bipsync_partner.sync.models import (
    NoteBody,
    SyncedAttachment,
    SyncedCategory,
    SyncedClassification,
    SyncedContact,
    SyncedProject,
    SyncedUser,
    TenantRow,
)


@dataclass(frozen=True)
class Value:
    """Where a column's value is in a node: a dotted path (``classification.id``), and the scope
    without which Bipsync answers the field with an error (then it is not asked for)."""

    path: str
    scope: str | None = None


@dataclass(frozen=True)
class Resource:
    """One resource: ``source`` the root connection, ``key`` the node's id, ``fields`` column ->
    :class:`Value` (or a plain path), ``model`` the local table.

    ``each`` names a connection inside each node whose nodes are the rows instead (an attachment
    per document), the outer node's key going to ``parent_column``; ``required`` paths must be
    non-null for a node to be a row (a note body exists for notes only).
    """

    name: str
    label: str
    source: str
    scopes: tuple[str, ...]
    model: type[TenantRow]
    fields: Mapping[str, Value | str]
    key: str = "id"
    each: str | None = None
    parent_column: str | None = None
    required: tuple[str, ...] = ()
    #: Nodes of ``each`` asked for per outer node; a node with more is read on by itself.
    each_page_size: int = 20
    extra_scopes: tuple[str, ...] = field(default=())

    def values(self) -> dict[str, Value]:
        return {
            column: v if isinstance(v, Value) else Value(v) for column, v in self.fields.items()
        }

    def granted(self, scopes: list[str]) -> bool:
        """Whether a connection granted ``scopes`` may read the resource. An empty list means the
        token response named no scopes (Bipsync's example has none, docs/bipsync.md "Tokens"):
        the engine then asks, and a refusal skips the resource."""
        return not scopes or all(s in scopes for s in (*self.scopes, *self.extra_scopes))

    def selection(self, scopes: list[str]) -> str:
        """The node's selection: the key and every value whose scope is granted (or unknown)."""
        paths = [self.key] + [
            v.path
            for v in self.values().values()
            if v.scope is None or not scopes or v.scope in scopes
        ]
        return _selection(paths)

    def query(self, scopes: list[str]) -> str:
        """The page query: ``$first`` and ``$after``, Relay paging (docs/bipsync.md, "GraphQL")."""
        node = self.selection(scopes)
        if self.each is not None:
            node = f"{self.key} {self.each}(first: {self.each_page_size}) {{ {_paged(node)} }}"
        return (
            f"query {self.name.title().replace('_', '')}($first: Int!, $after: String) "
            f"{{ {self.source}(first: $first, after: $after) {{ totalCount {_paged(node)} }} }}"
        )

    def each_query(self, scopes: list[str]) -> str:
        """The rest of one outer node's inner connection (``$id``, ``$first``, ``$after``)."""
        assert self.each is not None
        return (
            f"query {self.name.title().replace('_', '')}Of($id: ID!, $first: Int!, $after: String) "
            f"{{ {self.source}(first: 1, filter: {{id: {{in: [$id]}}}}) {{ edges {{ node {{ "
            f"{self.each}(first: $first, after: $after) {{ {_paged(self.selection(scopes))} }}"
            " } } } }"
        )


def _paged(node: str) -> str:
    return f"pageInfo {{ hasNextPage endCursor }} edges {{ node {{ {node} }} }}"


def _selection(paths: list[str]) -> str:
    """GraphQL selection text of dotted paths: ``["id", "a.b", "a.c"]`` -> ``id a { b c }``."""
    tree: dict[str, Any] = {}
    for path in paths:
        branch = tree
        for part in path.split("."):
            branch = branch.setdefault(part, {})

    def text(branch: dict[str, Any]) -> str:
        return " ".join(f"{k} {{ {text(v)} }}" if v else k for k, v in branch.items())

    return text(tree)


def value_at(node: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of a node (None where any step is missing or null)."""
    value: Any = node
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


USERS = Resource(
    name="users",
    label="users",
    source="users",
    scopes=("users:read",),
    model=SyncedUser,
    fields={"name": "name", "email": "email"},
)
CLASSIFICATIONS = Resource(
    name="classifications",
    label="classifications",
    source="classifications",
    scopes=("classifications:read",),
    model=SyncedClassification,
    fields={"name": "name"},
)
CATEGORIES = Resource(
    name="categories",
    label="companies and other categories",
    source="categories",
    scopes=("categories:read",),
    model=SyncedCategory,
    fields={
        "name": "name",
        "ticker": "ticker",
        "classification_bid": Value("classification.id", "classifications:read"),
        "external_ids": Value("externalIds", "external_ids:read"),
    },
)
CONTACTS = Resource(
    name="contacts",
    label="contacts",
    source="contacts",
    scopes=("contacts:read",),
    model=SyncedContact,
    fields={
        "name": "name",
        "email": "email",
        "external_ids": Value("externalIds", "external_ids:read"),
    },
)
PROJECTS = Resource(
    name="projects",
    label="projects",
    source="projects",
    scopes=("projects:read",),
    model=SyncedProject,
    fields={
        "name": "name",
        "stage": "stage",
        "external_ids": Value("externalIds", "external_ids:read"),
    },
)
NOTE_BODIES = Resource(
    name="note_bodies",
    label="note bodies",
    source="research",
    scopes=("research:read",),
    model=NoteBody,
    fields={"content": "content"},
    required=("content",),
)
ATTACHMENTS = Resource(
    name="attachments",
    label="attachments",
    source="research",
    scopes=("research:read",),
    extra_scopes=("attachments:read",),
    model=SyncedAttachment,
    fields={
        "file_name": "fileName",
        "length": "length",
        "content_type": "contentType",
        "bipsync_created": "created",
    },
    each="attachments",
    parent_column="document_bid",
)

#: Every resource, in the order a run reads them (classifications before the categories that
#: name them, so a page view in between finds the names).
ALL = (USERS, CLASSIFICATIONS, CATEGORIES, CONTACTS, PROJECTS, NOTE_BODIES, ATTACHMENTS)


def enabled() -> tuple[Resource, ...]:
    """The resources SYNC_RESOURCES names (all by default), in :data:`ALL`'s order."""
    names = set(settings.SYNC_RESOURCES)
    return tuple(r for r in ALL if r.name in names)
