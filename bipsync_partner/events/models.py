"""Webhook endpoints of a team, the events that happened, and one delivery per (event, endpoint).

The event row and its deliveries are the outbox: they are written in the transaction of the
change they describe, so a change that committed always has its event, and a rolled-back change
never has one. Delivery is a separate, retried step (:mod:`~bipsync_partner.events.delivery`).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

from accounts.models import Team
from bipsync_partner.connections.fields import EncryptedModel, EncryptedTextField

#: The event types an endpoint can subscribe to, with what they mean (shown on the form).
EVENT_TYPES: dict[str, str] = {
    "connection.connected": "A Bipsync connection was made.",
    "connection.needs_reconnect": "Bipsync no longer accepts a connection; someone must reconnect.",
    "connection.recovered": "A connection was connected again and works.",
    "connection.disconnected": "A connection was disconnected.",
    "sync.completed": "A sync run finished, with its counts and the change-feed cursor.",
    "write.delivered": "A write (note, attachment, upsert) reached Bipsync.",
    "write.failed": "A write failed for good.",
}


def new_event_uid() -> str:
    # Standard Webhooks' webhook-id: stable across retries and replays, unique per event.
    return f"evt_{uuid.uuid4().hex}"


class Endpoint(EncryptedModel):
    """An address of the team's that receives the events it subscribed to, signed with its
    secret (``whsec_`` + base64, the Standard Webhooks form)."""

    team = models.ForeignKey(Team, models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField("URL", max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    event_types = ArrayField(models.CharField(max_length=64), default=list)
    enabled = models.BooleanField(default=True)
    #: Why the endpoint was disabled (by an admin, or after failing for the retry period).
    disabled_reason = models.TextField(blank=True)
    secret = EncryptedTextField()
    #: The secret before the last rotation, also signed with until ``previous_secret_until``.
    previous_secret = EncryptedTextField(null=True, blank=True)
    previous_secret_until = models.DateTimeField(null=True, blank=True)
    #: Since when every delivery to it has failed (None once one succeeds).
    failing_since = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created"]

    def __str__(self) -> str:
        return f"Webhook endpoint {self.url} of {self.team_id}"

    def __repr__(self) -> str:
        return f"<Endpoint {self.pk} {self.url!r}>"

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets a delivery is signed with now: the current one, and the previous one
        during the overlap after a rotation (the receiver may not have switched yet)."""
        secrets = [str(self.secret)]
        if (
            self.previous_secret is not None
            and self.previous_secret_until is not None
            and now < self.previous_secret_until
        ):
            secrets.append(str(self.previous_secret))
        return secrets

    def rotate_secret(self, now: datetime) -> str:
        """Make a new secret, keep the current one for the overlap; the new one is returned
        (shown once) and the row saved."""
        from bipsync_partner.events.signing import new_secret

        self.previous_secret = str(self.secret)
        self.previous_secret_until = now + timedelta(seconds=settings.EVENTS_SECRET_OVERLAP_SECONDS)
        self.secret = new_secret()
        self.save(update_fields=["secret", "previous_secret", "previous_secret_until"])
        return str(self.secret)


class Event(models.Model):
    """Something that happened in a team, as sent: ``payload`` is ``{type, timestamp, data}``."""

    uid = models.CharField(max_length=40, unique=True, default=new_event_uid, editable=False)
    team = models.ForeignKey(Team, models.CASCADE, related_name="webhook_events")
    type = models.CharField(max_length=64)
    payload = models.JSONField()
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["team", "created"])]

    def __str__(self) -> str:
        return f"{self.type} {self.uid}"


class Delivery(models.Model):
    """One event to one endpoint: queued, retried with back-off, delivered or failed."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    # No index of their own: the unique (event, endpoint) serves look-ups by event, and the
    # delivery log's (endpoint, -created) those by endpoint. Every claim and every "delivered"
    # writes a row version, and each index of the table is one more entry to write for it.
    event = models.ForeignKey(Event, models.CASCADE, related_name="deliveries", db_index=False)
    endpoint = models.ForeignKey(
        Endpoint, models.CASCADE, related_name="deliveries", db_index=False
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    #: The retry period runs from the first attempt (or the last replay).
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    #: The worker that holds it (fencing its outcome) until ``lease_until``.
    claim_token = models.UUIDField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="events_one_per_endpoint")
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="events_delivery_due",
                condition=models.Q(status="pending"),
            ),
            # The claim's (events/claims.py): one endpoint's pending deliveries in the order they
            # are attempted, so that a claim reads the batch it takes rather than every pending
            # delivery of the endpoint, sorted (a burst of 2,000 events made each claim read
            # and sort all 2,000: bench/README.md, "Outbound events").
            models.Index(
                fields=["endpoint", "next_attempt_at", "id"],
                name="events_delivery_claim",
                condition=models.Q(status="pending"),
            ),
            models.Index(fields=["endpoint", "-created"], name="events_delivery_log"),
        ]

    def __str__(self) -> str:
        return f"Delivery {self.pk} ({self.status})"
