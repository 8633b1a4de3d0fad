"""Each tenant's last-known-good metadata (RFC 8414) and what happened to it, in PostgreSQL.

The OAuth core keeps no state of its own: :data:`last_good` is its ``LastGoodMetadataStore`` and
:func:`record_event` its ``on_event``, both given to ``discover`` by
:func:`bipsync_partner.connections.clients.server_metadata`.

- :class:`TenantMetadata`: the last document that passed validation, per issuer, without expiry
  (the shared cache has a TTL and lives in Redis; this copy is what a failed refetch falls back to).
- :class:`TenantMetadataEvent`: refused documents (security events), fallbacks to the last good
  copy, and changes of endpoints. Each is also a log line and a count on
  ``bipsync_metadata_events_total``, so that operators are told, not just recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.db import models
from django.utils import timezone

from bipsync_partner.oauth import MetadataEvent
from bipsync_partner.ops import metrics

log = logging.getLogger(__name__)


class TenantMetadata(models.Model):
    """The last metadata document of an issuer that passed validation."""

    issuer = models.CharField(max_length=500, unique=True)
    document = models.JSONField(help_text="The raw document; it is validated again on every use.")
    fetched_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "tenant metadata"

    def __str__(self) -> str:
        return f"metadata of {self.issuer}"


class TenantMetadataEvent(models.Model):
    """Something operators must hear about an issuer's metadata."""

    class Kind(models.TextChoices):
        REFUSED = "refused", "Refused (security event)"
        USED_LAST_GOOD = "used_last_good", "Refetch failed; last good copy used"
        ENDPOINTS_CHANGED = "endpoints_changed", "Endpoints changed"

    issuer = models.CharField(max_length=500)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    message = models.TextField()
    created = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["issuer", "-created"], name="tenant_metadata_event_issuer")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.issuer}"


class DatabaseLastGoodStore:
    """The core's ``LastGoodMetadataStore`` over :class:`TenantMetadata`.

    ``remember`` writes only when the document differs, so the steady state costs one indexed read
    per refetch and holds no row lock inside a caller's transaction (a refresh holds its
    connection's lock meanwhile). Two processes remembering the same new document race on a
    conditional UPDATE: only the one that replaced the old document is told it, so a change is
    reported once.
    """

    def load(self, issuer: str, /) -> Mapping[str, object] | None:
        row = TenantMetadata.objects.filter(issuer=issuer).only("document").first()
        return _document(row.document) if row is not None else None

    def remember(
        self, issuer: str, document: Mapping[str, object], /
    ) -> Mapping[str, object] | None:
        row, created = TenantMetadata.objects.get_or_create(
            issuer=issuer, defaults={"document": dict(document)}
        )
        if created:
            return None
        previous = _document(row.document)
        if previous == document:
            return previous
        replaced = TenantMetadata.objects.filter(pk=row.pk, document=row.document).update(
            document=dict(document), fetched_at=timezone.now()
        )
        # Lost the race: another process stored a newer document and reports the change itself.
        return previous if replaced else document


def _document(value: Any) -> Mapping[str, object] | None:
    return value if isinstance(value, dict) else None


last_good = DatabaseLastGoodStore()


def record_event(event: MetadataEvent) -> None:
    """Keep ``event``, count it and say it in the log (the core has logged its details)."""
    TenantMetadataEvent.objects.create(issuer=event.issuer, kind=event.kind, message=event.detail)
    metrics.inc("bipsync_metadata_events", event=event.kind)
    if event.kind == "endpoints_changed":
        log.warning(
            "Operators: the metadata of %s now names other endpoints (%s); they are followed "
            "from now on. Check with Bipsync that the change is theirs.",
            event.issuer,
            ", ".join(event.changed),
        )
