"""Admin API of what GraphQL reads: bulk categories, contacts and projects, attachments, limits.

| method + path | body | answer |
|---|---|---|
| POST /_sandbox/tenants/{slug}/generate/{kind} | count, with_tickers?, seed? | created, seconds |
| POST /_sandbox/tenants/{slug}/attachments | note, file_name, length, user? | attachment (id, sha256) |
| GET/PUT/DELETE /_sandbox/graphql-settings | max_complexity?, timeout_ms?, max_response_bytes? | limits |

``kind`` is categories, contacts or projects. An attachment made here counts as uploaded: its
``sha256`` is that of the bytes its download serves (:mod:`bipsync_sandbox.api.downloads`).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from bipsync_sandbox.api import directory, downloads
from bipsync_sandbox.api.graph.limits import current_limits
from bipsync_sandbox.api.models import ApiSettings, ResearchDocument
from bipsync_sandbox.api.render import iso
from bipsync_sandbox.api.write_models import Attachment
from bipsync_sandbox.control.admin_api import (
    BadInput,
    _body,
    _json,
    _opt_int,
    _str,
    _tenant,
    admin_api,
)
from bipsync_sandbox.identity.models import User

#: Generated attachments stay small enough to hash at once (the download streams any length).
MAX_ATTACHMENT_BYTES = 512 * 1024 * 1024


@admin_api(("POST",))
def generate_directory(request: HttpRequest, slug: str, kind: str) -> HttpResponse:
    data = _body(request)
    count = _opt_int(data, "count", 1)
    if count is None:
        raise BadInput("count is required.")
    with_tickers = data.get("with_tickers", True)
    if not isinstance(with_tickers, bool):
        raise BadInput("with_tickers must be true or false.")
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadInput("seed must be a whole number.")
    try:
        result = directory.generate(slug, kind, count, seed=seed, with_tickers=with_tickers)
    except directory.DirectoryError as exc:
        raise BadInput(str(exc)) from None
    return _json(result.as_dict(), status=201)


@admin_api(("POST",))
def create_attachment(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = _tenant(slug)
    data = _body(request)
    document = ResearchDocument.objects.filter(tenant=tenant, pk=_str(data, "note")).first()
    if document is None:
        raise BadInput("note is not a research document of this tenant.")
    file_name = _str(data, "file_name")
    if not file_name.strip() or "/" in file_name or len(file_name) > 500:
        raise BadInput("file_name must be a file's full name, e.g. report.pdf.")
    length = _opt_int(data, "length", 0)
    if length is None or length > MAX_ATTACHMENT_BYTES:
        raise BadInput(f"length must be between 0 and {MAX_ATTACHMENT_BYTES} bytes.")
    user_id = data.get("user") or document.user_id
    user = User.objects.filter(tenant=tenant, pk=user_id).first()
    if user is None:
        raise BadInput("user is not a user of this tenant.")
    attachment = Attachment(
        tenant=tenant, document=document, user=user, file_name=file_name, length=length
    )
    attachment.sha256 = downloads.sha256_of(attachment.id, length)
    attachment.uploaded_size = length
    attachment.uploads = 1
    attachment.uploaded_at = timezone.now()
    attachment.save()
    body: dict[str, Any] = {
        "id": attachment.id,
        "note": document.pk,
        "file_name": file_name,
        "length": length,
        "sha256": attachment.sha256,
        "created": iso(attachment.created),
    }
    return _json(body, status=201)


_LIMIT_FIELDS = {
    "max_complexity": "graphql_max_complexity",
    "timeout_ms": "graphql_timeout_ms",
    "max_response_bytes": "graphql_max_response_bytes",
}


@admin_api(("GET", "PUT", "DELETE"))
def graphql_settings_view(request: HttpRequest) -> HttpResponse:
    row, _ = ApiSettings.objects.get_or_create(pk=ApiSettings.SINGLETON_ID)
    if request.method == "PUT":
        data = _body(request)
        for key, column in _LIMIT_FIELDS.items():
            if key in data:
                setattr(row, column, _opt_int(data, key, 1))
        row.save()
    elif request.method == "DELETE":
        for column in _LIMIT_FIELDS.values():
            setattr(row, column, None)
        row.save()
    limits = current_limits()
    return _json(
        {
            "max_depth": limits.depth,
            "max_complexity": limits.complexity,
            "timeout_ms": limits.timeout_ms,
            "max_request_bytes": limits.request_bytes,
            "max_response_bytes": limits.response_bytes,
        }
    )
