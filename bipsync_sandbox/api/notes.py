"""Notes written through the API: create, look up by external id, update by id.

- ``POST /v2/research/note`` [doc]: creates a note (``views.create_note``), which may carry
  ``content`` (HTML) and ``externalIds`` (a list of ``{source, value}``) [doc].
- ``GET /v2/research/note?externalIds.source=S&externalIds.value=V`` [choice]: the notes the token
  may see that carry that external id, in the research envelope. The parameter names are
  ``SANDBOX_NOTE_LOOKUP_SOURCE_PARAM`` / ``SANDBOX_NOTE_LOOKUP_VALUE_PARAM``.
- ``PUT /v2/research/note/{id}`` [choice] (``SANDBOX_NOTE_UPDATE_METHOD``): replaces the members
  it is given (title, content, fields, externalIds) of a note the token may see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from bipsync_sandbox.api import rules, views
from bipsync_sandbox.api.auth import Principal
from bipsync_sandbox.api.errors import bad_request, not_found_response
from bipsync_sandbox.api.models import ResearchDocument
from bipsync_sandbox.api.pipeline import api_endpoint
from bipsync_sandbox.api.render import json_response
from bipsync_sandbox.api.write_models import NoteBody, NoteExternalId
from bipsync_sandbox.identity.models import Tenant

MAX_EXTERNAL_IDS = 20
MAX_CONTENT_CHARS = 5_000_000


def parse_external_ids(raw: Any) -> list[dict[str, str]] | None:
    """``externalIds`` as a list of ``{source, value}`` strings, or None when absent."""
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) > MAX_EXTERNAL_IDS:
        raise bad_request(
            f"externalIds must be a list of at most {MAX_EXTERNAL_IDS} {{source, value}} objects."
        )
    pairs: list[dict[str, str]] = []
    for item in raw:
        if not isinstance(item, dict):
            raise bad_request("Each of externalIds must be an object {source, value}.")
        source, value = item.get("source"), item.get("value")
        if not isinstance(source, str) or not isinstance(value, str) or not source or not value:
            raise bad_request("Each of externalIds needs a non-empty source and value.")
        if len(source) > 200 or len(value) > 500:
            raise bad_request("An external id's source is at most 200 characters, its value 500.")
        pairs.append({"source": source, "value": value})
    return pairs


@dataclass(frozen=True)
class NoteExtras:
    """What a note write carries beyond the research document: content and external ids."""

    content: str | None
    external_ids: list[dict[str, str]] | None

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> NoteExtras:
        content = body.get("content")
        if content is not None and not isinstance(content, str):
            raise bad_request("content must be a string of HTML.")
        if content is not None and len(content) > MAX_CONTENT_CHARS:
            raise bad_request(f"content must be at most {MAX_CONTENT_CHARS} characters.")
        return cls(content=content, external_ids=parse_external_ids(body.get("externalIds")))

    def save(self, document: ResearchDocument, *, created: bool) -> None:
        note, _ = NoteBody.objects.get_or_create(document=document)
        if self.content is not None:
            note.content = self.content
        if self.external_ids is not None:
            note.external_ids = self.external_ids
            NoteExternalId.objects.filter(document=document).delete()
            NoteExternalId.objects.bulk_create(
                NoteExternalId(
                    tenant_id=document.tenant_id,
                    document=document,
                    source=pair["source"],
                    value=pair["value"],
                )
                for pair in self.external_ids
            )
        note.history = [*note.history, {"created" if created else "updated": document.title}]
        note.save()


def note_item(document: ResearchDocument) -> dict[str, Any]:
    item = views.research_item(tuple(getattr(document, c) for c in views.RESEARCH_COLUMNS))
    body = NoteBody.objects.filter(document=document).first()
    item["content"] = body.content if body is not None else ""
    item["externalIds"] = body.external_ids if body is not None else []
    return item


def _lookup(request: HttpRequest, tenant: Tenant, principal: Principal) -> HttpResponse:
    source = request.GET.get(settings.SANDBOX_NOTE_LOOKUP_SOURCE_PARAM)
    value = request.GET.get(settings.SANDBOX_NOTE_LOOKUP_VALUE_PARAM)
    if not source or not value:
        raise bad_request(
            f"Name the external id: {settings.SANDBOX_NOTE_LOOKUP_SOURCE_PARAM}=…&"
            f"{settings.SANDBOX_NOTE_LOOKUP_VALUE_PARAM}=…"
        )
    offset, limit = views.page_params(request)
    ids = NoteExternalId.objects.filter(tenant_id=tenant.pk, source=source, value=value).values(
        "document_id"
    )
    query = ResearchDocument.objects.filter(views.visible_to(principal), pk__in=ids).order_by("id")
    total = query.count()
    results = [note_item(document) for document in query[offset : offset + limit]]
    return json_response(views.envelope(total, offset, limit, results))


@api_endpoint(scopes={"GET": views.READ, "POST": views.WRITE})
def note_collection(request: HttpRequest, tenant: Tenant, principal: Principal) -> HttpResponse:
    if request.method == "GET":
        return _lookup(request, tenant, principal)
    with transaction.atomic():
        return views.create_note(request, tenant, principal)


def visible_note(tenant: Tenant, principal: Principal, note_id: str) -> ResearchDocument | None:
    return (
        ResearchDocument.objects.filter(views.visible_to(principal), tenant_id=tenant.pk)
        .filter(pk=note_id)
        .first()
    )


def _update(
    request: HttpRequest, tenant: Tenant, principal: Principal, document: ResearchDocument
) -> HttpResponse:
    body = views._json_body(request)
    extras = NoteExtras.from_body(body)
    title = views._string(body, "title")
    if title is not None:
        if len(title) > 500:
            raise bad_request("title must be at most 500 characters.")
        document.title = title
    if "fields" in body:
        document.fields = views._check_fields(body["fields"], tenant, document.content_type)
    document.modified = timezone.now()
    with transaction.atomic():
        document.save(update_fields=["title", "fields", "modified"])
        extras.save(document, created=False)
        note = NoteBody.objects.filter(document=document).first()
        rules.fire(tenant.pk, "modified", [(document, note.content if note else "")])
    return json_response(note_item(document))


@api_endpoint(scopes={"GET": views.READ, settings.SANDBOX_NOTE_UPDATE_METHOD: views.WRITE})
def note_detail(
    request: HttpRequest, tenant: Tenant, principal: Principal, note_id: str
) -> HttpResponse:
    document = visible_note(tenant, principal, note_id)
    if document is None:
        return not_found_response("There is no note with this id that the token may see.")
    if request.method == "GET":
        return json_response(note_item(document))
    return _update(request, tenant, principal, document)
