"""The REST slice a sync needs (platform reference, "The REST API slice a sync needs").

- ``GET /v1/research``: research documents the token may see, offset/limit envelope, id order.
- ``GET /v1/contenttype`` and ``GET /v1/field`` (the latter needs ``rest_api:fields:read``).
- ``POST /v2/research/note``: create a note; JSON with at least ``user``; answers with its ``id``.
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import connection
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, QueryDict
from django.utils import timezone

from bipsync_sandbox.api import catalogue, listing, rules
from bipsync_sandbox.api.auth import Principal
from bipsync_sandbox.api.errors import ApiError, bad_request, not_found_response
from bipsync_sandbox.api.models import (
    Category,
    ContentType,
    Field,
    FieldType,
    ResearchDocument,
    object_id,
)
from bipsync_sandbox.api.pipeline import api_endpoint
from bipsync_sandbox.api.render import iso, json_response, json_text
from bipsync_sandbox.authserver.models import PrincipalKind
from bipsync_sandbox.identity.models import Membership, Tenant, User

READ = "rest_api:read"
WRITE = "rest_api:write"
FIELDS_READ = "rest_api:fields:read"

_NUMBER_RE = re.compile(r"^[0-9]{1,18}$")
_OBJECT_ID_RE = re.compile(r"^[0-9a-f]{24}$")
RESEARCH_COLUMNS = ("id", "title", "content_type_id", "user_id", "fields", "created", "modified")


# --- paging -----------------------------------------------------------------------------------


def _whole_number(query: QueryDict, name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if raw.startswith("-") and _NUMBER_RE.match(raw[1:]):
        raise bad_request(f"{name} must not be negative.")
    if not _NUMBER_RE.match(raw):
        raise bad_request(f"{name} must be a whole number, not {raw[:40]!r}.")
    return int(raw)


def page_params(request: HttpRequest) -> tuple[int, int]:
    """``offset`` (default 0) and ``limit`` (default 10 [doc example], max 100 [choice])."""
    offset = _whole_number(request.GET, "offset", 0)
    limit = _whole_number(request.GET, "limit", settings.SANDBOX_API_PAGE_SIZE_DEFAULT)
    if limit < 1:
        raise bad_request("limit must be at least 1.")
    maximum = settings.SANDBOX_API_PAGE_SIZE_MAX
    if limit > maximum:
        if settings.SANDBOX_API_PAGE_OVER_MAX == "error":
            raise bad_request(f"limit must be at most {maximum}.")
        # [choice] Clamp: the envelope's "limit" tells the client the page size it got.
        limit = maximum
    return offset, limit


def envelope(total: int, offset: int, limit: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"total": total, "offset": offset, "limit": limit, "results": results}


# --- visibility ---------------------------------------------------------------------------------


def visible_to(principal: Principal) -> Q:
    """Which research documents a token sees, by its kind (platform reference, "Grants")."""
    if principal.kind == PrincipalKind.TEAM and principal.team_id:
        # Client credentials with team_{id}: everything in the team, private notes included.
        return Q(team_id=principal.team_id)
    if principal.kind == PrincipalKind.SERVICE_ACCOUNT and principal.service_account_id:
        # Owned by the service account, or shared with its application, within its team.
        return Q(team_id=principal.service_account_team_id) & (
            Q(owner_service_account_id=principal.service_account_id)
            | Q(shared_with_apps__contains=[principal.application_id])
        )
    if principal.kind == PrincipalKind.USER and principal.user_id:
        teams = Membership.objects.filter(user_id=principal.user_id).values("team_id")
        # The user's own documents, and the shared (not private) documents of their teams.
        return Q(user_id=principal.user_id) | Q(private=False, team_id__in=teams)
    return Q(pk__in=[])


def research_item(row: tuple[Any, ...]) -> dict[str, Any]:
    doc_id, title, content_type_id, user_id, fields, created, modified = row
    return {
        "id": doc_id,
        "title": title,
        "contentType": content_type_id,
        "user": user_id,
        "fields": fields,
        "created": iso(created),
        "modified": iso(modified),
    }


# --- views --------------------------------------------------------------------------------------


# Postgres renders each item: the page's JSON is then a join of ready strings, and the ``fields``
# JSON is never decoded and re-encoded in Python. Timestamps as in render.iso().
_ITEMS_SQL = (
    "SELECT json_build_object('id', d.id, 'title', d.title, 'contentType', d.content_type_id, "
    "'user', d.user_id, 'fields', d.fields, "
    """'created', to_char(d.created AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), """
    """'modified', to_char(d.modified AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text """
    "FROM sandbox_api_researchdocument d WHERE d.id = ANY(%s) ORDER BY d.id"
)


@api_endpoint(scopes={"GET": READ})
def research_list(request: HttpRequest, tenant: Tenant, principal: Principal) -> HttpResponse:
    offset, limit = page_params(request)
    # The visible ids in id order come from a per-worker cache that a research change
    # invalidates (api.listing); the page's rows are then a primary-key fetch.
    ids = listing.visible_ids(tenant, principal)
    page = list(ids[offset : offset + limit])
    items: list[str] = []
    if page:
        with connection.cursor() as cursor:
            cursor.execute(_ITEMS_SQL, [page])
            items = [item for (item,) in cursor.fetchall()]
    head = json_text({"total": len(ids), "offset": offset, "limit": limit})
    body = head[:-1] + ',"results":[' + ",".join(items) + "]}"
    return HttpResponse(body, content_type="application/json")


@api_endpoint(scopes={"GET": READ})
def content_type_list(request: HttpRequest, tenant: Tenant, principal: Principal) -> HttpResponse:
    offset, limit = page_params(request)
    catalogue.ensure(tenant)
    query = ContentType.objects.filter(tenant_id=tenant.pk)
    total = query.count()
    results = [
        {"id": item_id, "name": name, "displayName": display}
        for item_id, name, display in query.order_by("id").values_list(
            "id", "name", "display_name"
        )[offset : offset + limit]
    ]
    return json_response(envelope(total, offset, limit, results))


@api_endpoint(scopes={"GET": FIELDS_READ})
def field_list(request: HttpRequest, tenant: Tenant, principal: Principal) -> HttpResponse:
    offset, limit = page_params(request)
    catalogue.ensure(tenant)
    query = Field.objects.filter(tenant_id=tenant.pk)
    total = query.count()
    results = [
        {
            "id": item.id,
            "apiIdentifier": item.api_identifier,
            "name": item.name,
            "fieldType": item.field_type,
            "options": item.options,
            "contentType": item.content_type_id,
            "order": item.order,
            "disabled": item.disabled,
        }
        for item in query.order_by("id")[offset : offset + limit]
    ]
    return json_response(envelope(total, offset, limit, results))


# --- note creation ----------------------------------------------------------------------------


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        raw = request.body
    except RequestDataTooBig:
        raise ApiError(413, "request_too_large", "The request body is too large.") from None
    if not raw.strip():
        raise bad_request('The body must be a JSON object, e.g. {"user": "<user id>"}.')
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_request(f"The body is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(body, dict):
        raise bad_request("The body must be a JSON object.")
    return body


def _string(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise bad_request(f"{name} is required.")
        return None
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string.")
    return value


def _author_and_team(
    body: dict[str, Any], tenant: Tenant, principal: Principal
) -> tuple[User, str, str | None]:
    user_id = _string(body, "user", required=True)
    assert user_id is not None
    if not _OBJECT_ID_RE.match(user_id):
        raise bad_request("user must be a 24-hex user id.")
    user = User.objects.filter(pk=user_id, tenant_id=tenant.pk, is_active=True).first()
    if user is None:
        raise bad_request("user is not an active user of this Bipsync site.")
    memberships = set(Membership.objects.filter(user=user).values_list("team_id", flat=True))
    if principal.kind == PrincipalKind.USER:
        if user.pk != principal.user_id:
            raise bad_request("A user's token can only create notes as that user.")
        requested = _string(body, "team")
        if requested is not None:
            if requested not in memberships:
                raise bad_request("team is not one of the user's teams.")
            return user, requested, None
        if len(memberships) != 1:
            raise bad_request("The user belongs to several teams (or none): name one in team.")
        return user, next(iter(memberships)), None
    account_id: str | None = None
    if principal.kind == PrincipalKind.SERVICE_ACCOUNT:
        account_id = principal.service_account_id
        team_id = principal.service_account_team_id
    else:
        team_id = principal.team_id
    if team_id is None or team_id not in memberships:
        raise bad_request("user is not a member of the token's team.")
    return user, team_id, account_id


def _check_fields(raw: Any, tenant: Tenant, content_type: ContentType) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise bad_request("fields must be a JSON object keyed by field apiIdentifier.")
    known = {
        f.api_identifier: f for f in Field.objects.filter(content_type=content_type, disabled=False)
    }
    lookups: dict[str, set[str]] = {}
    for key, value in raw.items():
        spec = known.get(key)
        if spec is None:
            raise bad_request(f"fields.{key[:64]} is not a field of {content_type.name} notes.")
        if spec.field_type == FieldType.LOOKUP:
            if not isinstance(value, list) or not all(
                isinstance(v, str) and _OBJECT_ID_RE.match(v) for v in value
            ):
                raise bad_request(f"fields.{key} must be a list of category ids.")
            lookups.setdefault(str(spec.options.get("lookup", "")), set()).update(value)
        elif spec.field_type == FieldType.SELECT:
            if value not in spec.options.get("choices", []):
                raise bad_request(f"fields.{key} must be one of {spec.options.get('choices')}.")
        elif spec.field_type == FieldType.NUMBER:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad_request(f"fields.{key} must be a number.")
        elif spec.field_type == FieldType.DATE:
            try:
                date.fromisoformat(value if isinstance(value, str) else "")
            except ValueError:
                raise bad_request(f"fields.{key} must be a date, YYYY-MM-DD.") from None
        elif not isinstance(value, str):
            raise bad_request(f"fields.{key} must be a string.")
    for kind, ids in lookups.items():
        found = Category.objects.filter(tenant_id=tenant.pk, kind=kind, pk__in=ids).count()
        if found != len(ids):
            raise bad_request(f"Some {kind} category ids are not known on this site.")
    return raw


@api_endpoint(scopes={"POST": WRITE})
def note_create(request: HttpRequest, tenant: Tenant, principal: Principal) -> HttpResponse:
    return create_note(request, tenant, principal)


def create_note(request: HttpRequest, tenant: Tenant, principal: Principal) -> HttpResponse:
    """``POST /v2/research/note``: the document, then what only writes keep (content, external
    ids, history; :mod:`bipsync_sandbox.api.notes`)."""
    from bipsync_sandbox.api import notes

    body = _json_body(request)
    extras = notes.NoteExtras.from_body(body)
    user, team_id, account_id = _author_and_team(body, tenant, principal)
    catalogue.ensure(tenant)
    type_id = _string(body, "contentType")
    query = ContentType.objects.filter(tenant_id=tenant.pk)
    content_type = (
        query.filter(pk=type_id).first()
        if type_id is not None
        else query.filter(name=catalogue.NOTE_CONTENT_TYPE).first()
    )
    if content_type is None:
        raise bad_request("contentType is not a content type of this site.")
    title = _string(body, "title") or "Untitled note"
    if len(title) > 500:
        raise bad_request("title must be at most 500 characters.")
    private = body.get("private", False)
    if not isinstance(private, bool):
        raise bad_request("private must be true or false.")
    fields = _check_fields(body.get("fields"), tenant, content_type)
    now = timezone.now()
    document = ResearchDocument.objects.create(
        id=object_id(now),
        tenant=tenant,
        team_id=team_id,
        content_type=content_type,
        title=title,
        user=user,
        owner_service_account_id=account_id,
        private=private,
        shared_with_apps=[],
        fields=fields,
        created=now,
        modified=now,
    )
    extras.save(document, created=True)
    rules.fire(tenant.pk, "created", [(document, extras.content or "")])
    item = notes.note_item(document)
    return json_response(item, status=settings.SANDBOX_API_NOTE_CREATED_STATUS)


def api_not_found(request: HttpRequest) -> HttpResponse:
    return not_found_response("There is no such endpoint in this API.")
