"""Links from a delivered write to what it made in Bipsync's web app.

The address is the research browser's (:func:`bipsync_partner.sync.research.bipsync_url`: the
tenant's web host and ``BIPSYNC_DOCUMENT_URL_PATH``), so both link to the same page.
"""

from __future__ import annotations

from dataclasses import dataclass

from bipsync_partner.sync.research import bipsync_url
from bipsync_partner.writes.models import Write


@dataclass(frozen=True)
class _Document:
    """The two facts :func:`bipsync_url` reads from a document."""

    tenant: str
    bipsync_id: str


def document_url(tenant: str, bipsync_id: str) -> str:
    """The page of the research document ``bipsync_id`` on ``tenant``'s web host ("" when the
    tenant or id cannot make a link)."""
    if not bipsync_id or not tenant:
        return ""
    return bipsync_url(_Document(tenant=tenant, bipsync_id=bipsync_id))


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
