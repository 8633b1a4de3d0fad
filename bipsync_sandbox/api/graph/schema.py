"""The GraphQL types and query root (docs/bipsync.md, "GraphQL").

Every root field is a Relay connection (:mod:`.paging`) and nullable, so that a missing scope
blanks only its own field. Nested fields that need another type's scope (a research item's
``user``, ``attachments``, ``externalIds``; a category's ``classification``) check it themselves.
"""

from __future__ import annotations

import mimetypes
from enum import Enum
from typing import Any

import strawberry
from django.db.models import Q, QuerySet
from strawberry.scalars import JSON
from strawberry.types import Info

from bipsync_sandbox.api import catalogue, models
from bipsync_sandbox.api.graph.context import context_of, require
from bipsync_sandbox.api.graph.paging import Connection, connect
from bipsync_sandbox.api.render import iso
from bipsync_sandbox.api.views import visible_to
from bipsync_sandbox.api.write_models import Attachment as AttachmentRow
from bipsync_sandbox.api.write_models import NoteBody
from bipsync_sandbox.authserver.models import PrincipalKind
from bipsync_sandbox.identity import models as identity

RESEARCH = "research:read"
USERS = "users:read"
CATEGORIES = "categories:read"
CLASSIFICATIONS = "classifications:read"
CONTACTS = "contacts:read"
PROJECTS = "projects:read"
ATTACHMENTS = "attachments:read"
EXTERNAL_IDS = "external_ids:read"


# --- filters and sorting -------------------------------------------------------------------


@strawberry.input
class IdFilter:
    in_: list[strawberry.ID] | None = strawberry.field(name="in", default=None)


@strawberry.input
class TextFilter:
    search: str | None = None
    equals: str | None = None


@strawberry.input
class EqualsFilter:
    equals: str | None = None


@strawberry.input
class IdEqualsFilter:
    equals: strawberry.ID | None = None


@strawberry.input
class ResearchFilter:
    id: IdFilter | None = None
    title: TextFilter | None = None
    has_fields: bool | None = None
    content_type: EqualsFilter | None = None


@strawberry.enum
class ResearchSortBy(Enum):
    CREATED_AT = "created"
    MODIFIED_AT = "modified"
    TITLE = "title"


@strawberry.enum
class SortDirection(Enum):
    ASCENDING = "asc"
    DESCENDING = "desc"


@strawberry.input
class ResearchSort:
    by: ResearchSortBy = ResearchSortBy.CREATED_AT
    direction: SortDirection = SortDirection.ASCENDING


@strawberry.input
class UserFilter:
    email: EqualsFilter | None = None
    id: IdFilter | None = None


@strawberry.input
class CategoryFilter:
    id: IdFilter | None = None
    name: TextFilter | None = None
    ticker: EqualsFilter | None = None
    classification: IdEqualsFilter | None = None


@strawberry.input
class ByIdFilter:
    id: IdFilter | None = None


def _ids(query: QuerySet[Any], ids: IdFilter | None) -> QuerySet[Any]:
    if ids is not None and ids.in_ is not None:
        query = query.filter(pk__in=[str(value) for value in ids.in_])
    return query


def _text(query: QuerySet[Any], column: str, text: TextFilter | None) -> QuerySet[Any]:
    if text is None:
        return query
    if text.equals is not None:
        query = query.filter(**{column: text.equals})
    if text.search is not None:
        query = query.filter(**{f"{column}__icontains": text.search})
    return query


def external_ids_of(pairs: list[dict[str, str]]) -> dict[str, list[str]]:
    """Writes keep a list of ``{source, value}``; GraphQL answers ``{source: [value, ...]}``."""
    grouped: dict[str, list[str]] = {}
    for pair in pairs:
        grouped.setdefault(pair["source"], []).append(pair["value"])
    return grouped


# --- types ---------------------------------------------------------------------------------


@strawberry.type
class User:
    id: strawberry.ID
    name: str
    email: str

    @strawberry.field
    def research(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Research] | None:
        """The research this user wrote that the token may see (Bipsync's example
        ``users { research(first: 5) }``)."""
        query = _research(info, None, None).filter(user_id=str(self.id))
        return connect(query, Research.of, first=first, after=after, last=last, before=before)

    @classmethod
    def of(cls, row: identity.User) -> User:
        return cls(id=strawberry.ID(row.pk), name=row.display_name, email=row.email)


@strawberry.type
class Team:
    id: strawberry.ID
    name: str


@strawberry.type
class ContentType:
    id: strawberry.ID
    name: str
    display_name: str


@strawberry.type
class Classification:
    id: strawberry.ID
    name: str

    @classmethod
    def of(cls, row: models.Classification) -> Classification:
        return cls(id=strawberry.ID(row.pk), name=row.name)


@strawberry.type
class Category:
    id: strawberry.ID
    name: str
    ticker: str | None
    row: strawberry.Private[models.Category]

    @strawberry.field
    def classification(self, info: Info) -> Classification | None:
        require(info, CLASSIFICATIONS)
        found = self.row.classification
        return Classification.of(found) if found is not None else None

    @strawberry.field
    def external_ids(self, info: Info) -> JSON | None:
        require(info, EXTERNAL_IDS)
        return JSON(self.row.external_ids or {})

    @classmethod
    def of(cls, row: models.Category) -> Category:
        return cls(id=strawberry.ID(row.pk), name=row.name, ticker=row.ticker or None, row=row)


@strawberry.type
class Contact:
    id: strawberry.ID
    name: str
    email: str | None
    row: strawberry.Private[models.Contact]

    @strawberry.field
    def external_ids(self, info: Info) -> JSON | None:
        require(info, EXTERNAL_IDS)
        return JSON(self.row.external_ids or {})


@strawberry.type
class Project:
    id: strawberry.ID
    name: str
    stage: str | None
    row: strawberry.Private[models.Project]

    @strawberry.field
    def external_ids(self, info: Info) -> JSON | None:
        require(info, EXTERNAL_IDS)
        return JSON(self.row.external_ids or {})


@strawberry.type
class Attachment:
    id: strawberry.ID
    file_name: str
    length: int
    content_type: str
    created: str

    @classmethod
    def of(cls, row: AttachmentRow) -> Attachment:
        guessed, _ = mimetypes.guess_type(row.file_name)
        return cls(
            id=strawberry.ID(row.pk),
            file_name=row.file_name,
            length=row.length,
            content_type=guessed or "application/octet-stream",
            created=iso(row.created),
        )


def _body(row: models.ResearchDocument) -> NoteBody | None:
    try:
        return row.body
    except NoteBody.DoesNotExist:
        return None


@strawberry.type
class Research:
    id: strawberry.ID
    title: str
    created: str
    modified: str
    fields: JSON
    content_type: ContentType
    row: strawberry.Private[models.ResearchDocument]

    @strawberry.field
    def user(self, info: Info) -> User | None:
        require(info, USERS)
        return User.of(self.row.user)

    @strawberry.field
    def content(self) -> str | None:
        """The HTML body of a note; null for research that is not a note or has none."""
        body = _body(self.row)
        return body.content if body is not None and body.content else None

    @strawberry.field
    def attachments(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Attachment] | None:
        require(info, ATTACHMENTS)
        query = AttachmentRow.objects.filter(document_id=self.row.pk).order_by("created", "id")
        return connect(query, Attachment.of, first=first, after=after, last=last, before=before)

    @strawberry.field
    def external_ids(self, info: Info) -> JSON | None:
        require(info, EXTERNAL_IDS)
        body = _body(self.row)
        return JSON(external_ids_of(body.external_ids if body is not None else []))

    @classmethod
    def of(cls, row: models.ResearchDocument) -> Research:
        kind = row.content_type
        return cls(
            id=strawberry.ID(row.pk),
            title=row.title,
            created=iso(row.created),
            modified=iso(row.modified),
            fields=JSON(row.fields or {}),
            content_type=ContentType(
                id=strawberry.ID(kind.pk), name=kind.name, display_name=kind.display_name
            ),
            row=row,
        )


@strawberry.type
class Me:
    """Whom the token acts as [choice, not documented by Bipsync]."""

    user: User | None
    team: Team | None
    service_account: bool


# --- root ----------------------------------------------------------------------------------


def _research(
    info: Info, sort: ResearchSort | None, filter: ResearchFilter | None
) -> QuerySet[models.ResearchDocument]:
    context = require(info, RESEARCH)
    query = (
        models.ResearchDocument.objects.filter(tenant_id=context.tenant.pk)
        .filter(visible_to(context.principal))
        .select_related("content_type", "user", "body")
    )
    if filter is not None:
        query = _ids(query, filter.id)
        query = _text(query, "title", filter.title)
        if filter.has_fields is not None:
            empty = Q(fields={})
            query = query.exclude(empty) if filter.has_fields else query.filter(empty)
        if filter.content_type is not None and filter.content_type.equals is not None:
            wanted = filter.content_type.equals
            query = query.filter(Q(content_type__name=wanted) | Q(content_type_id=wanted))
    order = sort or ResearchSort()
    sign = "-" if order.direction == SortDirection.DESCENDING else ""
    # The id breaks ties, so that positions (cursors) are stable between pages.
    return query.order_by(f"{sign}{order.by.value}", f"{sign}id")


@strawberry.type
class Query:
    @strawberry.field
    def research(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        sort: ResearchSort | None = None,
        filter: ResearchFilter | None = None,
    ) -> Connection[Research] | None:
        query = _research(info, sort, filter)
        return connect(query, Research.of, first=first, after=after, last=last, before=before)

    @strawberry.field
    def users(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: UserFilter | None = None,
    ) -> Connection[User] | None:
        context = require(info, USERS)
        query = identity.User.objects.filter(tenant_id=context.tenant.pk)
        if filter is not None:
            query = _ids(query, filter.id)
            if filter.email is not None and filter.email.equals is not None:
                query = query.filter(email__iexact=filter.email.equals)
        return connect(
            query.order_by("id"),
            User.of,
            first=first,
            after=after,
            last=last,
            before=before,
            keyed=True,
        )

    @strawberry.field
    def categories(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: CategoryFilter | None = None,
    ) -> Connection[Category] | None:
        context = require(info, CATEGORIES)
        catalogue.ensure(context.tenant)
        query = models.Category.objects.filter(tenant_id=context.tenant.pk).select_related(
            "classification"
        )
        if filter is not None:
            query = _ids(query, filter.id)
            query = _text(query, "name", filter.name)
            if filter.ticker is not None and filter.ticker.equals is not None:
                query = query.filter(ticker=filter.ticker.equals)
            if filter.classification is not None and filter.classification.equals is not None:
                query = query.filter(classification_id=str(filter.classification.equals))
        return connect(
            query.order_by("id"),
            Category.of,
            first=first,
            after=after,
            last=last,
            before=before,
            keyed=True,
        )

    @strawberry.field
    def classifications(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Classification] | None:
        context = require(info, CLASSIFICATIONS)
        catalogue.ensure(context.tenant)
        query = models.Classification.objects.filter(tenant_id=context.tenant.pk).order_by("id")
        return connect(
            query, Classification.of, first=first, after=after, last=last, before=before, keyed=True
        )

    @strawberry.field
    def contacts(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: ByIdFilter | None = None,
    ) -> Connection[Contact] | None:
        context = require(info, CONTACTS)
        query = models.Contact.objects.filter(tenant_id=context.tenant.pk)
        query = _ids(query, filter.id if filter is not None else None).order_by("id")

        def node(row: models.Contact) -> Contact:
            return Contact(
                id=strawberry.ID(row.pk), name=row.name, email=row.email or None, row=row
            )

        return connect(query, node, first=first, after=after, last=last, before=before, keyed=True)

    @strawberry.field
    def projects(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: ByIdFilter | None = None,
    ) -> Connection[Project] | None:
        context = require(info, PROJECTS)
        query = models.Project.objects.filter(tenant_id=context.tenant.pk)
        query = _ids(query, filter.id if filter is not None else None).order_by("id")

        def node(row: models.Project) -> Project:
            return Project(
                id=strawberry.ID(row.pk), name=row.name, stage=row.stage or None, row=row
            )

        return connect(query, node, first=first, after=after, last=last, before=before, keyed=True)


def whom(info: Info) -> Me:
    principal = context_of(info).principal
    user = identity.User.objects.filter(pk=principal.user_id).first() if principal.user_id else None
    team_id = principal.team_id or principal.service_account_team_id
    if team_id is None and user is not None:
        # A user in several teams acts in each; the first (by id) stands for them [choice].
        team_id = (
            identity.Membership.objects.filter(user=user)
            .order_by("team_id")
            .values_list("team_id", flat=True)
            .first()
        )
    team = identity.Team.objects.filter(pk=team_id).first() if team_id else None
    return Me(
        user=User.of(user) if user is not None else None,
        team=Team(id=strawberry.ID(team.pk), name=team.name) if team is not None else None,
        service_account=principal.kind == PrincipalKind.SERVICE_ACCOUNT,
    )


@strawberry.type(name="Query")
class QueryWithMe(Query):
    @strawberry.field
    def me(self, info: Info) -> Me:
        return whom(info)
