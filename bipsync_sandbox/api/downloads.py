"""Attachments' bytes read back: ``GET {SANDBOX_ATTACHMENT_DOWNLOAD_PATH}`` [choice].

The sandbox keeps no attachment bytes (uploads are hashed as they stream in, see
:mod:`.attachments`), so a download streams deterministic bytes of the attachment's length, made
from its id: a 50 MB file costs one 64 KiB block of memory, the same attachment always downloads
the same bytes, and an attachment made by the admin API records their SHA-256 so that a client can
check what it received. An uploaded attachment downloads the same way (its stored hash is that of
the upload, not of these bytes).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header

from bipsync_sandbox.api import notes
from bipsync_sandbox.api.auth import Principal
from bipsync_sandbox.api.errors import ApiError, not_found_response, unauthorized
from bipsync_sandbox.api.pipeline import api_endpoint
from bipsync_sandbox.api.write_models import Attachment
from bipsync_sandbox.identity.models import Tenant

BLOCK = 64 * 1024
#: Either scope reads the bytes: the REST read scope, or GraphQL's attachments:read (a client
#: that found the attachment through GraphQL) [choice].
SCOPES = frozenset({"rest_api:read", "attachments:read"})


def route() -> str:
    """The URL route of the download path setting, relative to the API base."""
    path = settings.SANDBOX_ATTACHMENT_DOWNLOAD_PATH.lstrip("/")
    return path.replace("{note}", "<str:note_id>").replace("{attachment}", "<str:attachment_id>")


def block_of(attachment_id: str) -> bytes:
    return random.Random(f"attachment:{attachment_id}").randbytes(BLOCK)


def chunks(attachment_id: str, length: int) -> Iterator[bytes]:
    block = block_of(attachment_id)
    whole, rest = divmod(length, BLOCK)
    for _ in range(whole):
        yield block
    if rest:
        yield block[:rest]


def sha256_of(attachment_id: str, length: int) -> str:
    digest = hashlib.sha256()
    for chunk in chunks(attachment_id, length):
        digest.update(chunk)
    return digest.hexdigest()


@api_endpoint(scopes={"GET": None})
def attachment_download(
    request: HttpRequest, tenant: Tenant, principal: Principal, note_id: str, attachment_id: str
) -> HttpResponse:
    if not SCOPES & principal.scopes:
        raise unauthorized(
            tenant.api_base,
            "insufficient_scope",
            "Downloading an attachment needs rest_api:read or attachments:read.",
            scope="rest_api:read",
            status=settings.SANDBOX_API_INSUFFICIENT_SCOPE_STATUS,
        )
    document = notes.visible_note(tenant, principal, note_id)
    if document is None:
        raise ApiError(404, "not_found", "There is no note with this id that the token may see.")
    attachment = Attachment.objects.filter(document=document, pk=attachment_id).first()
    if attachment is None:
        return not_found_response("There is no such attachment on this note.")
    response = StreamingHttpResponse(
        chunks(attachment.id, attachment.length), content_type="application/octet-stream"
    )
    response["Content-Length"] = str(attachment.length)
    disposition = content_disposition_header(True, attachment.file_name)
    if disposition:
        response["Content-Disposition"] = disposition
    # The pipeline's type is HttpResponse; Django serves a streaming answer through it alike.
    return response  # type: ignore[return-value]
