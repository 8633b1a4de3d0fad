"""Research content of the emulated Bipsync: content types, fields, categories and documents.

Shapes follow the platform reference ("The REST API slice a sync needs") and Bipsync's API examples:
a content type has ``id``, ``name``, ``displayName``; a field has ``apiIdentifier``, ``fieldType``,
``options`` (a lookup field names its category kind in ``options.lookup``); a research document keeps
its field values in ``fields`` keyed by ``apiIdentifier``, lookup values being category ids.

Who sees a document (platform reference, "Grants"):
- a user token: the user's own documents, and the shared (not private) documents of the user's teams;
- a service-account token: documents the service account owns, or that are shared with its
  application (``shared_with_apps``);
- a team token (client credentials): every document of the team, private notes included.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime

from django.contrib.postgres.fields import ArrayField
from django.db import models

from bipsync_sandbox.authserver.models import ServiceAccount
from bipsync_sandbox.identity.models import Team, Tenant, User


def object_id(at: datetime | None = None, random_hex: str | None = None) -> str:
    """A MongoDB ObjectId-shaped 24-hex id: 4 bytes of creation time, then 8 random bytes.

    Bipsync's ids are ObjectIds [doc]; their time prefix means that ordering by id roughly follows
    creation, so documents created later sort after the ones a client has already paged past.
    """
    seconds = int(at.timestamp()) if at is not None else int(time.time())
    return f"{seconds & 0xFFFFFFFF:08x}{random_hex or secrets.token_hex(8)}"


class ContentType(models.Model):
    """A kind of research document ("note", "meeting", "file", ...), per tenant."""

    id = models.CharField(primary_key=True, max_length=24, default=object_id, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="content_types")
    name = models.CharField(max_length=64)
    display_name = models.CharField(max_length=200)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="sandbox_content_type_name")
        ]

    def __str__(self) -> str:
        return self.display_name


class Classification(models.Model):
    """How categories are grouped ("Company", "Sector", "Region"), GraphQL's ``classification``."""

    id = models.CharField(primary_key=True, max_length=24, default=object_id, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="classifications")
    name = models.CharField(max_length=200)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="sandbox_classification_name")
        ]

    def __str__(self) -> str:
        return self.name


class Category(models.Model):
    """A value of a lookup field: a company ("entity"), a sector, a region."""

    id = models.CharField(primary_key=True, max_length=24, default=object_id, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="categories")
    kind = models.CharField(max_length=32)
    name = models.CharField(max_length=200)
    ticker = models.CharField(max_length=16, blank=True, default="")
    classification = models.ForeignKey(
        Classification, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # GraphQL's ``externalIds``: {source: [value, ...]}.
    external_ids = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "kind", "name"], name="sandbox_category_name")
        ]
        # GraphQL pages a tenant's categories in id order.
        indexes = [models.Index(fields=["tenant", "id"], name="sandbox_category_paging")]

    def __str__(self) -> str:
        return self.name


class Contact(models.Model):
    """A person outside the firm (an analyst, a company's investor relations), read via GraphQL."""

    id = models.CharField(primary_key=True, max_length=24, default=object_id, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="contacts")
    name = models.CharField(max_length=200)
    email = models.CharField(max_length=254, blank=True, default="")
    external_ids = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "id"], name="sandbox_contact_paging")]

    def __str__(self) -> str:
        return self.name


class Project(models.Model):
    """A piece of work followed through stages (a deal, an idea), read via GraphQL."""

    id = models.CharField(primary_key=True, max_length=24, default=object_id, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=200)
    stage = models.CharField(max_length=64, blank=True, default="")
    external_ids = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "id"], name="sandbox_project_paging")]

    def __str__(self) -> str:
        return self.name


class FieldType(models.TextChoices):
    TEXT = "text", "Text"
    NUMBER = "number", "Number"
    DATE = "date", "Date"
    SELECT = "select", "Select"
    LOOKUP = "lookup", "Lookup"


class Field(models.Model):
    id = models.CharField(primary_key=True, max_length=24, default=object_id, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="fields")
    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE, related_name="fields")
    api_identifier = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    field_type = models.CharField(max_length=16, choices=FieldType.choices)
    options = models.JSONField(default=dict, blank=True)
    order = models.PositiveIntegerField(default=0)
    disabled = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["content_type", "api_identifier"], name="sandbox_field_identifier"
            )
        ]

    def __str__(self) -> str:
        return self.name


class ResearchDocument(models.Model):
    id = models.CharField(primary_key=True, max_length=24, default=object_id, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="research")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="research")
    content_type = models.ForeignKey(ContentType, on_delete=models.PROTECT)
    title = models.CharField(max_length=500)
    # The author, the documented ``user`` property of a research item.
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="research")
    # Set when a service-account token created the document: the service account owns it.
    owner_service_account = models.ForeignKey(
        ServiceAccount, null=True, blank=True, on_delete=models.CASCADE, related_name="research"
    )
    # A private note is seen by its author (and team tokens) only.
    private = models.BooleanField(default=False)
    # Primary keys of the OAuth applications whose service accounts may see this document. An
    # array instead of a join table keeps bulk generation a single COPY and the visibility check
    # inside the covering index below.
    shared_with_apps = ArrayField(models.BigIntegerField(), default=list, blank=True)
    fields = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField()
    modified = models.DateTimeField()

    class Meta:
        indexes = [
            # GET /v1/research pages in id order with OFFSET/LIMIT and counts the visible rows:
            # both run as index-only scans of this covering index, the visibility filter reading
            # the included columns (no heap visit per skipped row).
            models.Index(
                fields=["tenant", "id"],
                include=["team", "private", "user", "owner_service_account", "shared_with_apps"],
                name="sandbox_research_paging",
            ),
            models.Index(fields=["team", "id"], name="sandbox_research_team"),
        ]

    def __str__(self) -> str:
        return f"research {self.id}"


class ApiSettings(models.Model):
    """Run-time overrides of the REST API's [choice] settings (one row), shared by all workers."""

    SINGLETON_ID = 1

    rate_limit = models.PositiveIntegerField(null=True, blank=True)
    rate_window = models.PositiveIntegerField(null=True, blank=True)
    # GraphQL limits ([choice] SANDBOX_GRAPHQL_* settings), overridable so that a test can hit
    # one without a query of that size.
    graphql_max_complexity = models.PositiveIntegerField(null=True, blank=True)
    graphql_timeout_ms = models.PositiveIntegerField(null=True, blank=True)
    graphql_max_response_bytes = models.PositiveIntegerField(null=True, blank=True)
    #: Overrides SANDBOX_TOKEN_RESPONSE_INCLUDES_SUBJECT while set (None: the setting).
    token_response_includes_subject = models.BooleanField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return "sandbox REST API run-time settings"


class RateWindow(models.Model):
    """Requests counted in the current window, per access token.

    The table is UNLOGGED (see the migration): rate-limit state need not survive a crash, and
    skipping the write-ahead log keeps the per-request upsert cheap.
    """

    token_id = models.BigIntegerField(primary_key=True)
    # When the token's current window opened (Unix seconds): a window starts at the first request
    # after the previous one ended, so a client always gets its full allowance per window.
    started_at = models.FloatField()
    hits = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"rate window of token {self.token_id}"


class ResearchVersion(models.Model):
    """A counter per tenant, bumped by database triggers on every change to its documents.

    Listing pages come from a per-worker cache of the sorted visible ids (see api.listing), which
    is valid while this counter has not moved. Triggers (migration 0003) catch every write: the
    bulk COPY, the mutation statements, note creation, cascading deletes.
    """

    tenant_id = models.BigIntegerField(primary_key=True)
    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"research version {self.version} of tenant {self.tenant_id}"


# The models of what partners write live beside the code that uses them; importing them here
# registers them with the app (Django only imports models.py).
from bipsync_sandbox.api.rules import Rule, RuleCall  # noqa: E402, F401
from bipsync_sandbox.api.write_models import (  # noqa: E402, F401
    Attachment,
    IngestRecord,
    NoteBody,
    NoteExternalId,
)
