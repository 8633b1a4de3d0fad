"""API keys (per team, or per installation for the partner's back office) and the idempotency
keys of the API's writes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone


class ApiKey(models.Model):
    """A key a program presents as ``Authorization: Bearer bp_<prefix>_<secret>``.

    Only the SHA-256 of the secret is stored (:mod:`.keys` says why no slow hash); the prefix is
    the public handle that finds the row and names the key on pages and in logs.
    """

    class Scope(models.TextChoices):
        READ = "read", "Read"
        WRITE = "write", "Write"

    #: None: an installation key, for the partner's own back office (staff create those).
    team = models.ForeignKey(
        "accounts.Team", models.CASCADE, null=True, blank=True, related_name="api_keys"
    )
    name = models.CharField(max_length=80, help_text="What the key is for, e.g. “CRM export”.")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    scopes = ArrayField(models.CharField(max_length=8, choices=Scope.choices), default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created = models.DateTimeField(default=timezone.now, editable=False)
    #: Recorded at most once per API_KEY_LAST_USED_RESOLUTION_SECONDS (a write per request
    #: would be a write per read).
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )

    ALL_SCOPES: ClassVar[tuple[str, ...]] = (Scope.READ, Scope.WRITE)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} (bp_{self.prefix}_…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def masked(self) -> str:
        return f"bp_{self.prefix}_…"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def revoke(self, user: object | None = None) -> None:
        """Refused from the next request on (every request reads the key's row)."""
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.revoked_by = user if user is not None else None  # type: ignore[assignment]
            self.save(update_fields=["revoked_at", "revoked_by"])

    def note_use(self, now: datetime | None = None) -> None:
        """Record the use, unless one was recorded within the resolution."""
        now = now or timezone.now()
        resolution = timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION_SECONDS)
        if self.last_used_at is not None and now - self.last_used_at < resolution:
            return
        # Conditional, so that concurrent requests of one key write it once.
        stale = models.Q(last_used_at__isnull=True) | models.Q(last_used_at__lt=now - resolution)
        ApiKey.objects.filter(stale, pk=self.pk).update(last_used_at=now)
        self.last_used_at = now


class IdempotencyKey(models.Model):
    """The write an ``Idempotency-Key`` produced, per team: the same key with the same request
    returns it again; with another request it is refused. Kept here, beside the API, so that
    the writes outbox knows nothing of HTTP."""

    team = models.ForeignKey("accounts.Team", models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    #: SHA-256 of the operation and its canonical JSON body.
    request_hash = models.CharField(max_length=64)
    write = models.ForeignKey("writes.Write", models.CASCADE, related_name="+")
    created = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "key"], name="one_write_per_idempotency_key")
        ]

    def __str__(self) -> str:
        return f"Idempotency key of write {self.write_id}"
