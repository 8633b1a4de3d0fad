"""What partners write: notes' content and external ids, attachments, and ingested records.

Kept beside the research model rather than in it: a note created through the API is an ordinary
:class:`~bipsync_sandbox.api.models.ResearchDocument` (so the research listing shows it), and what
only writes need (its HTML content, its ``externalIds``, the history of its writes) lives here.

External ids are **not** unique here on purpose: Bipsync asks clients to keep source/value pairs
unique [doc] without saying it refuses a duplicate, and the sandbox must be able to show a client
that wrote one twice (the admin API counts notes and records per external id).
"""

from __future__ import annotations

from django.db import models

from bipsync_sandbox.api.models import ResearchDocument, object_id
from bipsync_sandbox.identity.models import Tenant, User


class NoteBody(models.Model):
    """The written side of a note created or updated through ``/v2/research/note``."""

    document = models.OneToOneField(
        ResearchDocument, models.CASCADE, primary_key=True, related_name="body"
    )
    content = models.TextField(blank=True)
    external_ids = models.JSONField(default=list, blank=True)
    #: The title of every create or update in the order the sandbox applied them, so that a test
    #: can tell whether a client's writes of one note arrived in order.
    history = models.JSONField(default=list, blank=True)

    def __str__(self) -> str:
        return f"body of {self.document_id}"


class NoteExternalId(models.Model):
    """One ``{source, value}`` of a note, indexed for the look-up by external id."""

    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="+")
    document = models.ForeignKey(ResearchDocument, models.CASCADE, related_name="external_ids")
    source = models.CharField(max_length=200)
    value = models.CharField(max_length=500)

    class Meta:
        indexes = [models.Index(fields=["tenant", "source", "value"], name="sandbox_note_extid")]

    def __str__(self) -> str:
        return f"{self.source}:{self.value}"


class Attachment(models.Model):
    """An attachment's metadata, then (after the upload step) the size and SHA-256 of its bytes.

    The bytes themselves are not kept: they are hashed as they stream in, so a 500 MB upload
    costs the sandbox a buffer, not 500 MB.
    """

    id = models.CharField(primary_key=True, max_length=24, default=object_id, editable=False)
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="+")
    document = models.ForeignKey(ResearchDocument, models.CASCADE, related_name="attachments")
    user = models.ForeignKey(User, models.CASCADE, related_name="+")
    file_name = models.CharField(max_length=500)
    length = models.BigIntegerField()
    external_ids = models.JSONField(default=list, blank=True)
    uploaded_size = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    uploads = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    uploaded_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"attachment {self.id}"


class IngestRecord(models.Model):
    """A category, contact or project written through ``/v3/ingest/{source}/{value}``."""

    id = models.CharField(primary_key=True, max_length=24, default=object_id, editable=False)
    tenant = models.ForeignKey(Tenant, models.CASCADE, related_name="+")
    document_type = models.CharField(max_length=32)
    source = models.CharField(max_length=200)
    value = models.CharField(max_length=500)
    properties = models.JSONField(default=dict, blank=True)
    writes = models.PositiveIntegerField(default=1)
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "source", "value"], name="sandbox_ingest_extid")]

    def __str__(self) -> str:
        return f"{self.document_type} {self.id}"
