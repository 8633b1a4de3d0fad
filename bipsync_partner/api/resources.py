"""``/users``, ``/categories``, ``/contacts``, ``/projects``: the resources a sync reads through
GraphQL (bipsync_partner/sync/resources.py), as an API key reads them.

These are a tenant's directories, one row per Bipsync id per tenant of the team with no
sightings (``TenantRow``): a key sees the team's live rows, as the research pages do when they
name authors and companies. As for research, each resource is a queryset and a schema, and its
list and detail endpoints are a few lines (``paging.page`` and ``paging.one``).
"""

from __future__ import annotations

from typing import TypeVar

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Router

from bipsync_partner.api.auth import READ, caller
from bipsync_partner.api.paging import one, page
from bipsync_partner.api.responses import READ_ERRORS
from bipsync_partner.api.schemas import (
    CategoryOut,
    CategoryPage,
    ClassificationOut,
    ContactOut,
    ContactPage,
    ProjectOut,
    ProjectPage,
    UserOut,
    UserPage,
)
from bipsync_partner.sync.models import (
    SyncedCategory,
    SyncedClassification,
    SyncedContact,
    SyncedProject,
    SyncedUser,
    TenantRow,
)

router = Router(tags=["resources"], auth=READ)

R = TypeVar("R", bound=TenantRow)

#: Feed resource -> the path of its rows under /api/v1/ (``/changes`` links its entries).
PATHS = {
    "research": "research",
    "users": "users",
    "categories": "categories",
    "contacts": "contacts",
    "projects": "projects",
}


def live(model: type[R], request: HttpRequest) -> QuerySet[R]:
    """The caller's team's live rows of ``model``."""
    return model._default_manager.filter(team=caller(request).team, deleted_at__isnull=True)


# --- users -------------------------------------------------------------------------------------


def user_out(row: SyncedUser) -> UserOut:
    return UserOut(
        id=row.pk,
        bipsync_id=row.bipsync_id,
        tenant=row.tenant,
        name=row.name,
        email=row.email,
        first_synced_at=row.first_synced_at,
        changed_at=row.changed_at,
    )


@router.get("/users", response={200: UserPage, **READ_ERRORS}, summary="List users")
def list_users(
    request: HttpRequest, after: str | None = None, limit: int | None = None
) -> UserPage:
    found = page(live(SyncedUser, request), after, limit)
    return UserPage(items=[user_out(r) for r in found.items], next_cursor=found.next_cursor)


@router.get("/users/{user_id}", response={200: UserOut, **READ_ERRORS}, summary="Get a user")
def get_user(request: HttpRequest, user_id: int) -> UserOut:
    return user_out(one(live(SyncedUser, request), user_id, "user"))


# --- categories --------------------------------------------------------------------------------


def _classification_names(categories: list[SyncedCategory]) -> dict[tuple[str, str], str]:
    """(tenant, classification id) -> its name, for the classifications ``categories`` name (one
    query for a page)."""
    wanted = {c.classification_bid for c in categories if c.classification_bid}
    if not wanted:
        return {}
    rows = SyncedClassification.objects.filter(
        team_id=categories[0].team_id, bipsync_id__in=wanted, deleted_at__isnull=True
    ).values_list("tenant", "bipsync_id", "name")
    return {(tenant, bid): name for tenant, bid, name in rows}


def categories_out(categories: list[SyncedCategory]) -> list[CategoryOut]:
    names = _classification_names(categories)
    return [
        CategoryOut(
            id=c.pk,
            bipsync_id=c.bipsync_id,
            tenant=c.tenant,
            name=c.name,
            ticker=c.ticker,
            classification=ClassificationOut(
                bipsync_id=c.classification_bid,
                name=names.get((c.tenant, c.classification_bid), ""),
            )
            if c.classification_bid
            else None,
            external_ids=c.external_ids,
            first_synced_at=c.first_synced_at,
            changed_at=c.changed_at,
        )
        for c in categories
    ]


@router.get("/categories", response={200: CategoryPage, **READ_ERRORS}, summary="List categories")
def list_categories(
    request: HttpRequest, after: str | None = None, limit: int | None = None
) -> CategoryPage:
    found = page(live(SyncedCategory, request), after, limit)
    return CategoryPage(items=categories_out(found.items), next_cursor=found.next_cursor)


@router.get(
    "/categories/{category_id}",
    response={200: CategoryOut, **READ_ERRORS},
    summary="Get a category",
)
def get_category(request: HttpRequest, category_id: int) -> CategoryOut:
    return categories_out([one(live(SyncedCategory, request), category_id, "category")])[0]


# --- contacts ----------------------------------------------------------------------------------


def contact_out(row: SyncedContact) -> ContactOut:
    return ContactOut(
        id=row.pk,
        bipsync_id=row.bipsync_id,
        tenant=row.tenant,
        name=row.name,
        email=row.email,
        external_ids=row.external_ids,
        first_synced_at=row.first_synced_at,
        changed_at=row.changed_at,
    )


@router.get("/contacts", response={200: ContactPage, **READ_ERRORS}, summary="List contacts")
def list_contacts(
    request: HttpRequest, after: str | None = None, limit: int | None = None
) -> ContactPage:
    found = page(live(SyncedContact, request), after, limit)
    return ContactPage(items=[contact_out(r) for r in found.items], next_cursor=found.next_cursor)


@router.get(
    "/contacts/{contact_id}", response={200: ContactOut, **READ_ERRORS}, summary="Get a contact"
)
def get_contact(request: HttpRequest, contact_id: int) -> ContactOut:
    return contact_out(one(live(SyncedContact, request), contact_id, "contact"))


# --- projects ----------------------------------------------------------------------------------


def project_out(row: SyncedProject) -> ProjectOut:
    return ProjectOut(
        id=row.pk,
        bipsync_id=row.bipsync_id,
        tenant=row.tenant,
        name=row.name,
        stage=row.stage,
        external_ids=row.external_ids,
        first_synced_at=row.first_synced_at,
        changed_at=row.changed_at,
    )


@router.get("/projects", response={200: ProjectPage, **READ_ERRORS}, summary="List projects")
def list_projects(
    request: HttpRequest, after: str | None = None, limit: int | None = None
) -> ProjectPage:
    found = page(live(SyncedProject, request), after, limit)
    return ProjectPage(items=[project_out(r) for r in found.items], next_cursor=found.next_cursor)


@router.get(
    "/projects/{project_id}", response={200: ProjectOut, **READ_ERRORS}, summary="Get a project"
)
def get_project(request: HttpRequest, project_id: int) -> ProjectOut:
    return project_out(one(live(SyncedProject, request), project_id, "project"))
