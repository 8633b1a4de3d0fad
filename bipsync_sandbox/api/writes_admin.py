"""Admin API endpoints that show what partners wrote (same key and conventions as the others).

| method + path | query / body | answer |
|---|---|---|
| GET /_sandbox/tenants/{slug}/notes/external-ids | source | source, counts {value: notes}, notes |
| GET /_sandbox/tenants/{slug}/notes/by-external-id | source, value | notes with content, history, attachments |
| GET /_sandbox/tenants/{slug}/ingest/external-ids | source | source, counts {value: records}, records |
| GET /_sandbox/tenants/{slug}/ingest/by-external-id | source, value | records |
| POST /_sandbox/tenants/{slug}/ingest | source, value, document_type, properties? | record (always a new one, to make duplicates) |

A count above 1 means a client wrote the same external id twice: what "exactly once" forbids.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count
from django.http import HttpRequest, HttpResponse

from bipsync_sandbox.api.ingest import DOCUMENT_TYPES, record_item
from bipsync_sandbox.api.write_models import Attachment, IngestRecord, NoteBody, NoteExternalId
from bipsync_sandbox.control.admin_api import BadInput, _body, _json, _str, _tenant, admin_api
from bipsync_sandbox.identity.models import Tenant


def _query(request: HttpRequest, name: str) -> str:
    value = request.GET.get(name, "")
    if not value:
        raise BadInput(f"{name} is required.")
    return value


def _counts(rows: Any) -> dict[str, int]:
    return {
        row["value"]: row["n"] for row in rows.values("value").annotate(n=Count("id")).order_by()
    }


@admin_api(("GET",))
def note_counts(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = _tenant(slug)
    source = _query(request, "source")
    rows = NoteExternalId.objects.filter(tenant=tenant, source=source)
    counts = _counts(rows)
    return _json({"source": source, "counts": counts, "notes": sum(counts.values())})


def _attachment_json(row: Attachment) -> dict[str, Any]:
    return {
        "id": row.id,
        "file_name": row.file_name,
        "length": row.length,
        "external_ids": row.external_ids,
        "uploaded_size": row.uploaded_size,
        "sha256": row.sha256 or None,
        "uploads": row.uploads,
    }


def _note_json(tenant: Tenant, document_id: str) -> dict[str, Any]:
    body = NoteBody.objects.select_related("document").get(document_id=document_id)
    document = body.document
    return {
        "id": document.id,
        "title": document.title,
        "content": body.content,
        "fields": document.fields,
        "external_ids": body.external_ids,
        "history": body.history,
        "owner_service_account": document.owner_service_account_id,
        "attachments": [
            _attachment_json(row)
            for row in Attachment.objects.filter(document=document).order_by("created", "id")
        ],
    }


@admin_api(("GET",))
def notes_by_external_id(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = _tenant(slug)
    ids = (
        NoteExternalId.objects.filter(
            tenant=tenant, source=_query(request, "source"), value=_query(request, "value")
        )
        .order_by("document_id")
        .values_list("document_id", flat=True)
    )
    return _json([_note_json(tenant, document_id) for document_id in ids])


@admin_api(("GET",))
def ingest_counts(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = _tenant(slug)
    source = _query(request, "source")
    counts = _counts(IngestRecord.objects.filter(tenant=tenant, source=source))
    return _json({"source": source, "counts": counts, "records": sum(counts.values())})


@admin_api(("GET",))
def ingest_by_external_id(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = _tenant(slug)
    rows = IngestRecord.objects.filter(
        tenant=tenant, source=_query(request, "source"), value=_query(request, "value")
    ).order_by("created", "id")
    return _json([{**record_item(row), "writes": row.writes} for row in rows])


@admin_api(("POST",))
def seed_ingest_record(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = _tenant(slug)
    data = _body(request)
    document_type = _str(data, "document_type")
    if document_type not in DOCUMENT_TYPES:
        raise BadInput(f"document_type must be one of {', '.join(DOCUMENT_TYPES)}.")
    properties = data.get("properties") or {}
    if not isinstance(properties, dict):
        raise BadInput("properties must be a JSON object.")
    record = IngestRecord.objects.create(
        tenant=tenant,
        document_type=document_type,
        source=_str(data, "source"),
        value=_str(data, "value"),
        properties=properties,
    )
    return _json(record_item(record), status=201)
