"""The outbox of writes to Bipsync: one row per note, attachment or upsert the partner asked for.

A row is committed in the caller's own transaction (:mod:`bipsync_partner.writes.api`), so a
write exists exactly when the partner's own change does; the deliverer
(:mod:`bipsync_partner.writes.delivery`) then sends it, exactly once, through the token service.

How "exactly once" holds (docs/bipsync.md, "Writing ... in more detail"):

- every note carries the partner's external id (``external_source``, ``external_value``); after
  any attempt whose outcome is unknown (``uncertain``: a timeout, a dropped connection, a 5xx
  after the request was sent, or a worker killed while it held the write), the deliverer looks the
  note up by that id before it sends again and adopts it when it exists;
- a worker *claims* a write with a lease (``claim_token``, ``lease_until``) under
  ``SELECT ... FOR UPDATE SKIP LOCKED``; every later change is fenced on the claim token, so a
  worker whose lease ran out can no longer change the row another worker took over.

Order: writes with the same ``ordering_key`` in one team are delivered in id order; an
attachment shares its note's key and also names the note's write in ``depends_on``.

The delivered and failed rows of a connection are its history of writes (``connection``): the
connection page can list them without a second table.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.db import models
from django.utils import timezone


class Write(models.Model):
    """One write to Bipsync and the state of its delivery. The payload holds no secret."""

    class Kind(models.TextChoices):
        NOTE = "note", "Note"
        ATTACHMENT = "attachment", "Attachment"
        UPSERT = "upsert", "Upsert by external id"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    #: Statuses that still hold back later writes of the same ordering key.
    PENDING: ClassVar[tuple[str, ...]] = (Status.QUEUED, Status.SENDING)
    FINAL: ClassVar[tuple[str, ...]] = (Status.DELIVERED, Status.FAILED, Status.CANCELLED)

    id = models.BigAutoField(primary_key=True)
    #: A public handle for pages and logs (the integer id orders writes; this names one).
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey("accounts.Team", models.CASCADE, related_name="bipsync_writes")
    #: The connection that writes it: chosen at delivery (the team's service account unless the
    #: caller named one); kept afterwards as the connection's history of writes.
    connection = models.ForeignKey(
        "connections.Connection",
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="writes",
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    #: For upserts: Bipsync's kind of record ("category", "contact", "project").
    document_type = models.CharField(max_length=32, blank=True)
    external_source = models.CharField(max_length=100)
    external_value = models.CharField(max_length=255)
    payload = models.JSONField(default=dict, blank=True)
    ordering_key = models.CharField(max_length=400)
    #: An attachment waits for its note's write, and uses the note's Bipsync id.
    depends_on = models.ForeignKey(
        "self", models.CASCADE, null=True, blank=True, related_name="dependents"
    )

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    #: True from the moment an attempt may have reached Bipsync until its outcome is known: the
    #: next attempt looks the result up by external id before it sends anything.
    uncertain = models.BooleanField(default=False)
    claim_token = models.UUIDField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    #: Bipsync's id of the note, attachment or record this write produced (or adopted).
    bipsync_id = models.CharField(max_length=64, blank=True)
    #: The id of the note an attachment belongs to, at Bipsync.
    parent_bipsync_id = models.CharField(max_length=64, blank=True)
    #: How far a multi-step write got ("metadata" once an attachment's metadata exists).
    step = models.CharField(max_length=32, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True, help_text="A sentence for people; never a token.")

    created = models.DateTimeField(default=timezone.now, editable=False)
    updated = models.DateTimeField(auto_now=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # The sweep: due writes that are not final.
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status__in=["queued", "sending"]),
                name="write_due",
            ),
            # "Is an earlier write of this key still pending?"
            models.Index(
                fields=["team", "ordering_key", "id"],
                condition=models.Q(status__in=["queued", "sending"]),
                name="write_pending_by_key",
            ),
            # Looking up the note an external id produced earlier, and the Deliveries page.
            models.Index(
                fields=["team", "kind", "external_source", "external_value", "-id"],
                name="write_by_external_id",
            ),
            models.Index(fields=["connection", "-id"], name="write_connection_history"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} write {self.uid} ({self.get_status_display()})"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL
