"""The address a customer's Bipsync Rules engine calls to say that research changed.

Bipsync signs nothing it sends (docs/bipsync.md, "Webhooks"), so the address itself is the
credential: ``/webhooks/bipsync/<connection id>/?key=<token>``, the token 32 random bytes, in the
query because access logs leave the query out (``bipsync_partner/gunicorn_conf.py``). Only the
SHA-256 of the token is stored (a random 256-bit secret needs no slow hash): the address is
shown once, when a team admin makes or rotates it, and a lost address is rotated, as an
invitation link is sent again. Rotating replaces the digest, so the old address stops working
at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from urllib.parse import urlencode

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from accounts.models import User

#: Compared against when the connection is unknown, so that an unknown connection and a wrong
#: token cost the same work and get the same answer.
_NO_DIGEST = hashlib.sha256(b"no receiver").hexdigest()


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class WebhookReceiver(models.Model):
    """A connection's webhook address (its token's digest), made by a team admin."""

    connection = models.OneToOneField(
        "connections.Connection",
        models.CASCADE,
        primary_key=True,
        related_name="webhook_receiver",
    )
    token_digest = models.CharField(max_length=64)
    rotated_at = models.DateTimeField(default=timezone.now)
    rotated_by = models.ForeignKey(User, models.SET_NULL, null=True, blank=True, related_name="+")

    def __str__(self) -> str:
        return f"Webhook address of connection {self.connection_id}"

    def matches(self, token: str) -> bool:
        return hmac.compare_digest(self.token_digest, token_digest(token))


def rotate(connection_id: uuid.UUID, actor: User | None) -> str:
    """Make a new address for the connection (the old one stops working); its token."""
    token = secrets.token_urlsafe(32)
    WebhookReceiver.objects.update_or_create(
        connection_id=connection_id,
        defaults={
            "token_digest": token_digest(token),
            "rotated_at": timezone.now(),
            "rotated_by": actor,
        },
    )
    return token


def find(connection_id: uuid.UUID, token: str) -> WebhookReceiver | None:
    """The receiver whose address this is, or None. A wrong token and an unknown connection do
    the same work: one indexed lookup and one constant-time comparison."""
    receiver = (
        WebhookReceiver.objects.select_related("connection")
        .filter(connection_id=connection_id)
        .first()
    )
    digest = receiver.token_digest if receiver is not None else _NO_DIGEST
    if not hmac.compare_digest(digest, token_digest(token)) or receiver is None:
        return None
    return receiver


def address(connection_id: uuid.UUID, token: str) -> str:
    path = reverse("webhooks:receive", kwargs={"connection_id": connection_id})
    return f"{settings.SITE_URL.rstrip('/')}{path}?{urlencode({'key': token})}"
