"""``POST /v3/ingest/{source}/{value}`` [doc]: upsert a category, contact or project by external id.

One record with that external id: it is updated (its properties merged with the body's). None and
``documentType`` given: one is created. None without ``documentType``: 404 [choice of status]; more
than one: 409 [choice of status]. Bipsync documents that both fail, not how.

Writes of one external id are serialised by a transaction-scoped advisory lock, so two concurrent
upserts of a new id create one record, as a single Bipsync database would.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse

from bipsync_sandbox.api import views
from bipsync_sandbox.api.auth import Principal
from bipsync_sandbox.api.errors import ApiError, bad_request
from bipsync_sandbox.api.pipeline import api_endpoint
from bipsync_sandbox.api.render import iso, json_response
from bipsync_sandbox.api.write_models import IngestRecord
from bipsync_sandbox.identity.models import Tenant

DOCUMENT_TYPES = ("category", "contact", "project")


def record_item(record: IngestRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "documentType": record.document_type,
        "externalIds": [{"source": record.source, "value": record.value}],
        **record.properties,
        "created": iso(record.created),
        "modified": iso(record.modified),
    }


def _properties(body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    document_type = body.get("documentType")
    if document_type is not None and document_type not in DOCUMENT_TYPES:
        raise bad_request(f"documentType must be one of {', '.join(DOCUMENT_TYPES)}.")
    properties = {k: v for k, v in body.items() if k not in ("documentType", "externalIds", "id")}
    return document_type, properties


@api_endpoint(scopes={"POST": views.WRITE})
def ingest(
    request: HttpRequest, tenant: Tenant, principal: Principal, source: str, value: str
) -> HttpResponse:
    document_type, properties = _properties(views._json_body(request))
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                [f"ingest:{tenant.pk}:{source}:{value}"],
            )
        matches = list(
            IngestRecord.objects.filter(tenant_id=tenant.pk, source=source, value=value)[:2]
        )
        if len(matches) > 1:
            raise ApiError(
                409, "ambiguous", f"More than one record has the external id {source}/{value}."
            )
        if matches:
            record = matches[0]
            if document_type is not None and document_type != record.document_type:
                raise bad_request(
                    f"The record with this external id is a {record.document_type}, "
                    f"not a {document_type}."
                )
            record.properties = {**record.properties, **properties}
            record.writes += 1
            record.save()
            return json_response(record_item(record))
        if document_type is None:
            raise ApiError(
                404,
                "not_found",
                f"No record has the external id {source}/{value}; give documentType to create one.",
            )
        record = IngestRecord.objects.create(
            tenant=tenant,
            document_type=document_type,
            source=source,
            value=value,
            properties=properties,
        )
    return json_response(record_item(record), status=settings.SANDBOX_INGEST_CREATED_STATUS)
