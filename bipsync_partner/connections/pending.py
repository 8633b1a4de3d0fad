"""Pending authorizations, kept server-side between "Connect Bipsync" and the callback.

A row per authorization request, keyed by the SHA-256 of its ``state`` (the state itself is a
bearer secret of the flow and is never stored in the clear) and bound to

- the browser session (the SHA-256 of the session key: the key itself is a credential),
- the user who clicked and the team they clicked in,
- the kind and tenant, and the connection being reconnected, if any.

The core's pending data (:meth:`PendingAuthorization.to_dict`, which holds the PKCE verifier) is
stored encrypted with the connections crypto, bound to the row.

A row is used once: :meth:`SessionPendingStore.take` claims it with a conditional
``UPDATE ... SET used_at = now() WHERE used_at IS NULL AND session_hash = ...``, so two identical
callbacks arriving at once exchange the code once (the second finds nothing to claim). The
session condition is part of the UPDATE so that a response replayed from another session cannot
burn the owner's authorization.

When a reconnect comes back as another Bipsync subject, the new tokens wait on the same row
(encrypted, for ``BIPSYNC_SUBJECT_CHANGE_HOLD_SECONDS``) until the person who reconnected confirms.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.db import models
from django.utils import timezone

from bipsync_partner.connections.crypto import DecryptionError
from bipsync_partner.connections.fields import EncryptedModel, EncryptedTextField
from bipsync_partner.connections.kinds import KindSpec, spec
from bipsync_partner.oauth import CallbackError, PendingAuthorization

Refusal = Literal["unknown", "reused", "other_session"]


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def pending_lifetime() -> timedelta:
    """How long a pending authorization is honoured (the code's own lifetime by default)."""
    return timedelta(seconds=settings.BIPSYNC_PENDING_AUTHORIZATION_SECONDS)


def hold_lifetime() -> timedelta:
    """How long new tokens wait for an admin to confirm a change of service-account subject."""
    return timedelta(seconds=settings.BIPSYNC_SUBJECT_CHANGE_HOLD_SECONDS)


class PendingAuthorizationRecord(EncryptedModel):
    """One authorization request waiting for (or answered by) its callback."""

    state_hash = models.CharField(max_length=64, unique=True)
    session_hash = models.CharField(max_length=64)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="+")
    team = models.ForeignKey("accounts.Team", models.CASCADE, related_name="+")
    kind = models.CharField(max_length=20)
    tenant = models.CharField(max_length=63)
    connection = models.ForeignKey(
        "connections.Connection",
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The connection this authorization reconnects, when known at the start.",
    )
    payload = EncryptedTextField(help_text="PendingAuthorization.to_dict() as JSON, encrypted.")
    created = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    # A reconnect that came back as another subject: the new tokens, held.
    held_access_token = EncryptedTextField(null=True, blank=True)
    held_refresh_token = EncryptedTextField(null=True, blank=True)
    held_details = models.JSONField(default=dict, blank=True)
    held_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["created"], name="pending_authorization_created")]

    @property
    def kind_spec(self) -> KindSpec:
        """What the kind being connected is (the kinds table)."""
        return spec(self.kind)

    def __str__(self) -> str:
        return f"pending {self.kind} authorization to {self.tenant} for {self.team_id}"

    def __repr__(self) -> str:
        return (
            f"<PendingAuthorizationRecord {self.pk} kind={self.kind} tenant={self.tenant} "
            f"used={self.used_at is not None}>"
        )

    def pending(self) -> PendingAuthorization:
        """The core's pending authorization (``CallbackError`` if the stored data is bad)."""
        try:
            # Does not decrypt when its key left TOKEN_ENCRYPTION_KEYS or the row was tampered
            # with: the callback then answers with a sentence, like any unusable authorization.
            data: Any = json.loads(self.payload)
        except (DecryptionError, TypeError, ValueError) as exc:
            raise CallbackError(
                "the stored authorization is not readable", error="invalid_pending"
            ) from exc
        if not isinstance(data, dict):
            raise CallbackError("the stored authorization is not readable", error="invalid_pending")
        return PendingAuthorization.from_dict(data)

    @property
    def is_holding(self) -> bool:
        return self.held_until is not None and self.held_access_token is not None

    def hold_expired(self, now: datetime) -> bool:
        return self.held_until is None or self.held_until <= now

    def release_hold(self) -> list[str]:
        self.held_access_token = None
        self.held_refresh_token = None
        self.held_details = {}
        self.held_until = None
        return ["held_access_token", "held_refresh_token", "held_details", "held_until"]

    @classmethod
    def purge_stale(cls, now: datetime) -> int:
        """Delete rows nobody can use any more (a day old: long past every lifetime)."""
        deleted, _ = cls.objects.filter(created__lt=now - timedelta(days=1)).delete()
        return deleted


class SessionPendingStore:
    """The core's ``PendingAuthorizationStore`` for one browser session and user.

    ``put`` needs the team, kind and tenant, given at construction for a connect; ``take``
    claims the row (see the module docstring) and remembers it in :attr:`record`, or, when it
    cannot, why not in :attr:`refusal`.
    """

    def __init__(
        self,
        session_key: str,
        user_id: int,
        *,
        team_id: int | None = None,
        kind: str = "",
        tenant: str = "",
        connection_id: Any = None,
    ) -> None:
        self.session_hash = digest(session_key)
        self.user_id = user_id
        self.team_id = team_id
        self.kind = kind
        self.tenant = tenant
        self.connection_id = connection_id
        self.record: PendingAuthorizationRecord | None = None
        self.refusal: Refusal | None = None

    def put(self, pending: PendingAuthorization) -> None:
        assert self.team_id is not None, "a connect needs its team"
        now = timezone.now()
        PendingAuthorizationRecord.purge_stale(now)
        self.record = PendingAuthorizationRecord.objects.create(
            state_hash=digest(pending.state),
            session_hash=self.session_hash,
            user_id=self.user_id,
            team_id=self.team_id,
            kind=self.kind,
            tenant=self.tenant,
            connection_id=self.connection_id,
            payload=json.dumps(pending.to_dict()),
            created=now,
            expires_at=pending.created_at + pending_lifetime(),
        )

    def take(self, state: str) -> PendingAuthorization | None:
        state_hash = digest(state)
        claimed = PendingAuthorizationRecord.objects.filter(
            state_hash=state_hash,
            session_hash=self.session_hash,
            user_id=self.user_id,
            used_at__isnull=True,
        ).update(used_at=timezone.now())
        if claimed != 1:
            row = (
                PendingAuthorizationRecord.objects.filter(state_hash=state_hash)
                .only("session_hash", "user_id", "used_at")
                .first()
            )
            if row is None:
                self.refusal = "unknown"
            elif row.session_hash != self.session_hash or row.user_id != self.user_id:
                self.refusal = "other_session"
            else:
                self.refusal = "reused"
            return None
        self.record = PendingAuthorizationRecord.objects.get(state_hash=state_hash)
        return self.record.pending()
