"""Attachments downloaded on demand: the bytes stream from Bipsync to the browser, never stored
here and never held whole in memory.

The request to Bipsync goes through one of the viewer's connections that sees the document, with
its token from the token service (:func:`~bipsync_partner.sync.client.api_for`), at
BIPSYNC_ATTACHMENT_DOWNLOAD_PATH (not documented by Bipsync; docs/bipsync.md, "defaults").
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils.http import content_disposition_header

from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.visibility import is_usable
from bipsync_partner.sync.api import ApiError
from bipsync_partner.sync.client import api_for
from bipsync_partner.sync.models import DocumentSighting, ResearchDocument, SyncedAttachment

log = logging.getLogger(__name__)

#: Bytes handed to the web server at a time: memory per download stays about this.
CHUNK_BYTES = 64 * 1024


def reader(document: ResearchDocument, sources: list[Connection]) -> Connection | None:
    """A usable connection among ``sources`` that sees the document (the first by id)."""
    usable = [c for c in sources if is_usable(c)]
    seeing = set(
        DocumentSighting.objects.filter(
            document=document, connection_id__in=[c.pk for c in usable]
        ).values_list("connection_id", flat=True)
    )
    found = sorted((c for c in usable if c.pk in seeing), key=lambda c: str(c.pk))
    return found[0] if found else None


def _sentence(text: str, status: int) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")


def stream(attachment: SyncedAttachment, connection: Connection) -> HttpResponseBase:
    """The attachment's bytes from Bipsync as a download, or a sentence saying why not."""
    path = settings.BIPSYNC_ATTACHMENT_DOWNLOAD_PATH.format(
        document=attachment.document_bid, attachment=attachment.bipsync_id
    )
    stack = contextlib.ExitStack()
    try:
        api = api_for(connection)
        stack.callback(api.close)
        upstream = stack.enter_context(api.download(path))
    except ApiError as error:
        stack.close()
        log.info("Attachment %s could not be downloaded: %s", attachment.bipsync_id, error.code)
        status = 404 if error.status == 404 else 502
        return _sentence(f"Bipsync did not hand over the file: {error.sentence}", status)

    def chunks() -> Iterator[bytes]:
        with stack:  # closes Bipsync's answer and the client when the last chunk is sent
            yield from upstream.iter_raw(CHUNK_BYTES)

    # application/octet-stream whatever the stored type: the file is Bipsync users' content,
    # and served from this origin it must never be rendered as a page (with nosniff below).
    response = StreamingHttpResponse(chunks(), content_type="application/octet-stream")
    length = upstream.headers.get("content-length", "")
    if length.isdigit():
        response["Content-Length"] = length
    response["Content-Disposition"] = (
        content_disposition_header(True, attachment.file_name or f"{attachment.bipsync_id}.bin")
        or "attachment"
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response
