"""Links from a delivered write to what it made in Bipsync's web app.

The web host is the tenant's (``BIPSYNC_WEB_BASE_TEMPLATE``, docs/bipsync.md "Tenants and
hosts"); the path of a document page is not documented, so it is the setting
``BIPSYNC_DOCUMENT_URL_PATH`` (with ``{id}``), which the research browser uses as well. Until
that setting exists in every deployment, this module's default stands in for it.
"""

from __future__ import annotations

from typing import Final

from django.conf import settings

from bipsync_partner.connections.clients import tenant as resolve_tenant
from bipsync_partner.oauth import ConfigurationError
from bipsync_partner.writes.models import Write

DEFAULT_DOCUMENT_URL_PATH: Final = "/research/{id}"


def document_url(tenant: str, bipsync_id: str) -> str:
    """The page of the research document ``bipsync_id`` on ``tenant``'s web host ("" when the
    tenant or id cannot make a link)."""
    if not bipsync_id:
        return ""
    path = str(getattr(settings, "BIPSYNC_DOCUMENT_URL_PATH", DEFAULT_DOCUMENT_URL_PATH))
    try:
        web_base = resolve_tenant(tenant).web_base
    except ConfigurationError:
        return ""
    return web_base.rstrip("/") + path.replace("{id}", bipsync_id)


def delivered_link(write: Write) -> str:
    """Where a delivered note (or the note an attachment was added to) is in Bipsync; upserts
    make categories, contacts or projects, whose pages Bipsync does not document: no link."""
    if write.status != Write.Status.DELIVERED or write.connection is None:
        return ""
    if write.kind == Write.Kind.NOTE:
        return document_url(write.connection.tenant, write.bipsync_id)
    if write.kind == Write.Kind.ATTACHMENT:
        return document_url(write.connection.tenant, write.parent_bipsync_id)
    return ""
