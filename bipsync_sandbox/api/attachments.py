"""Attachments of notes: metadata first [doc], then the bytes [choice].

- ``POST /v2/research/note/{id}/attachment`` [doc] with ``fileName``, ``length`` (bytes) and
  ``user`` (and optionally ``externalIds``) creates the metadata; the answer carries its ``id``
  and an ``uploadUrl`` [choice].
- ``GET /v2/research/note/{id}/attachment`` [choice]: the note's attachments, with whether each
  has its bytes, and the ``uploadUrl`` of those that do not (a client that lost an answer finds
  its attachment by external id here).
- ``PUT {uploadUrl}`` [choice]: the raw bytes, exactly ``length`` of them, with the same Bearer
  token. They are hashed as they stream in and only their size and SHA-256 are kept, so an upload
  of hundreds of megabytes costs one buffer. A second PUT replaces the first (idempotent).
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from bipsync_sandbox.api import notes, views
from bipsync_sandbox.api.auth import Principal
from bipsync_sandbox.api.errors import ApiError, bad_request, not_found_response
from bipsync_sandbox.api.models import ResearchDocument
from bipsync_sandbox.api.pipeline import api_endpoint
from bipsync_sandbox.api.render import iso, json_response
from bipsync_sandbox.api.write_models import Attachment
from bipsync_sandbox.identity.models import Tenant, User

CHUNK = 256 * 1024


def upload_url(tenant: Tenant, attachment: Attachment) -> str:
    return tenant.api_url(
        f"/v2/research/note/{attachment.document_id}/attachment/{attachment.id}/content"
    )


def attachment_item(tenant: Tenant, attachment: Attachment) -> dict[str, Any]:
    uploaded = attachment.uploaded_at is not None
    item: dict[str, Any] = {
        "id": attachment.id,
        "note": attachment.document_id,
        "fileName": attachment.file_name,
        "length": attachment.length,
        "user": attachment.user_id,
        "externalIds": attachment.external_ids,
        "uploaded": uploaded,
        "created": iso(attachment.created),
    }
    if uploaded:
        item["sha256"] = attachment.sha256
    else:
        item["uploadUrl"] = upload_url(tenant, attachment)
    return item


def _note(tenant: Tenant, principal: Principal, note_id: str) -> ResearchDocument:
    document = notes.visible_note(tenant, principal, note_id)
    if document is None:
        raise ApiError(404, "not_found", "There is no note with this id that the token may see.")
    return document


def _create(
    request: HttpRequest, tenant: Tenant, principal: Principal, document: ResearchDocument
) -> HttpResponse:
    body = views._json_body(request)
    file_name = views._string(body, "fileName", required=True) or ""
    if not file_name.strip() or len(file_name) > 500 or "/" in file_name:
        raise bad_request("fileName must be a file's full name, e.g. my-report.pdf.")
    length = body.get("length")
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise bad_request("length must be the file's size in bytes.")
    if length > settings.SANDBOX_ATTACHMENT_MAX_BYTES:
        raise ApiError(413, "too_large", "The file is larger than this site accepts.")
    user_id = views._string(body, "user", required=True)
    user = User.objects.filter(pk=user_id, tenant_id=tenant.pk, is_active=True).first()
    if user is None:
        raise bad_request("user is not an active user of this Bipsync site.")
    attachment = Attachment.objects.create(
        tenant=tenant,
        document=document,
        user=user,
        file_name=file_name,
        length=length,
        external_ids=notes.parse_external_ids(body.get("externalIds")) or [],
    )
    return json_response(attachment_item(tenant, attachment), status=201)


@api_endpoint(scopes={"GET": views.READ, "POST": views.WRITE})
def attachment_collection(
    request: HttpRequest, tenant: Tenant, principal: Principal, note_id: str
) -> HttpResponse:
    document = _note(tenant, principal, note_id)
    if request.method == "POST":
        return _create(request, tenant, principal, document)
    rows = Attachment.objects.filter(document=document).order_by("created", "id")
    results = [attachment_item(tenant, row) for row in rows]
    return json_response(views.envelope(len(results), 0, len(results), results))


def _declared_length(request: HttpRequest) -> int:
    raw = request.META.get("CONTENT_LENGTH") or ""
    if not raw.isdigit():
        # Django reads a body only up to its Content-Length; a chunked upload would arrive empty.
        raise ApiError(411, "length_required", "Send the bytes with a Content-Length header.")
    return int(raw)


@api_endpoint(scopes={"PUT": views.WRITE})
def attachment_content(
    request: HttpRequest, tenant: Tenant, principal: Principal, note_id: str, attachment_id: str
) -> HttpResponse:
    document = _note(tenant, principal, note_id)
    attachment = Attachment.objects.filter(document=document, pk=attachment_id).first()
    if attachment is None:
        return not_found_response("There is no such attachment on this note.")
    declared = _declared_length(request)
    if declared > settings.SANDBOX_ATTACHMENT_MAX_BYTES:
        raise ApiError(413, "too_large", "The file is larger than this site accepts.")
    # The body is read (and hashed) whatever its length, so that the answer reaches a client
    # that is still sending: a server that answers early and closes cuts the client off.
    digest = hashlib.sha256()
    size = 0
    while chunk := request.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    if size != attachment.length:
        raise bad_request(
            f"The upload is {size} bytes but the attachment's length is {attachment.length}."
        )
    attachment.uploaded_size = size
    attachment.sha256 = digest.hexdigest()
    attachment.uploads += 1
    attachment.uploaded_at = timezone.now()
    attachment.save(update_fields=["uploaded_size", "sha256", "uploads", "uploaded_at"])
    return json_response(attachment_item(tenant, attachment))
