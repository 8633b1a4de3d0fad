"""Connections to Bipsync tenants, their encrypted tokens, and their history.

A *connection* is what one authorization produced: a team's service account, a member's own user
authorization (in the browser or from the command line with the device grant), or a team's
machine credentials (client credentials grant). The token service (:mod:`tokens`) is the only
writer of tokens after the first exchange; everything else reads status and expiry.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar, Final

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Coalesce, Greatest, Least
from django.utils import timezone

from accounts.models import User
from bipsync_partner.connections.fields import EncryptedModel, EncryptedTextField
from bipsync_partner.connections.kinds import PERSONAL, TEAM_WIDE, Kind, KindSpec, spec
from bipsync_partner.oauth.tenants import SLUG_PATTERN

tenant_validator = RegexValidator(
    SLUG_PATTERN,
    "A tenant is 1-63 lowercase letters, digits or inner hyphens, as in acme for acme.bipsync.com.",
)
# Bipsync ids are 24 hexadecimal characters (docs/bipsync.md, "The REST API slice").
bipsync_id_validator = RegexValidator(
    r"^[0-9a-f]{24}$", "A Bipsync team id is 24 hexadecimal characters (0-9, a-f)."
)


#: An access token is due for a refresh within the leeway of its expiry, but the leeway is never
#: more than this share of the token's lifetime: with a 60 s leeway a 60 s token would be due the
#: moment it arrives, and every call would refresh it.
LEEWAY_SHARE_OF_LIFETIME: Final = 0.5


def scaled_leeway(leeway: timedelta, lifetime: timedelta | None) -> timedelta:
    """The leeway for a token that lives ``lifetime`` (None: unknown, the leeway as given). The
    one rule "is this access token due for a refresh", for the token service, the sweep and the
    API client; :func:`_scaled_leeway_sql` is the same rule for the sweep's query."""
    if lifetime is None:
        return leeway
    return min(leeway, max(timedelta(0), lifetime * LEEWAY_SHARE_OF_LIFETIME))


def _scaled_leeway_sql(leeway: timedelta) -> models.Expression:
    share = models.ExpressionWrapper(
        (models.F("access_expires_at") - models.F("last_refreshed_at"))
        * models.Value(LEEWAY_SHARE_OF_LIFETIME),
        output_field=models.DurationField(),
    )
    # An unknown lifetime (NULL) leaves the leeway as given.
    known = Coalesce(share, models.Value(leeway))
    return Least(models.Value(leeway), Greatest(known, models.Value(timedelta(0))))


class ConnectionQuerySet(models.QuerySet["Connection"]):
    def live(self) -> ConnectionQuerySet:
        return self.exclude(status=Connection.Status.DISCONNECTED)

    def due_for_refresh(
        self, *, now: datetime, horizon: timedelta, refresh_horizon: timedelta | None = None
    ) -> ConnectionQuerySet:
        """Connections the sweep should refresh (:meth:`Connection.is_due_for_refresh` in SQL):
        usable ones whose access token expires within ``horizon`` (scaled to its lifetime), or
        whose refresh token lapses within ``refresh_horizon``, unless a back-off has not passed.
        The (status, access_expires_at) index serves the unscaled bound."""
        scaled_soon = models.ExpressionWrapper(
            models.Value(now) + _scaled_leeway_sql(horizon), output_field=models.DateTimeField()
        )
        due = models.Q(access_expires_at__lte=now + horizon) & models.Q(
            access_expires_at__lte=scaled_soon
        )
        if refresh_horizon is not None:
            due |= models.Q(refresh_expires_at__lte=now + refresh_horizon)
        retry_due = models.Q(next_retry_at__isnull=True) | models.Q(next_retry_at__lte=now)
        return self.filter(
            (models.Q(status=Connection.Status.ACTIVE) & due)
            | (models.Q(status=Connection.Status.FAILING) & due & retry_due)
        )


class Connection(EncryptedModel):
    """One authorization to one Bipsync tenant, owned by a team (and, for user and device
    connections, by one of its members)."""

    #: The kinds and what each one does live in :mod:`~bipsync_partner.connections.kinds`.
    Kind = Kind

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        FAILING = "failing", "Retrying"
        NEEDS_RECONNECT = "needs_reconnect", "Needs reconnecting"
        DISCONNECTED = "disconnected", "Disconnected"

    STATUS_SENTENCES: ClassVar[dict[str, str]] = {
        Status.ACTIVE: "Connected. Tokens are refreshed automatically.",
        Status.FAILING: (
            "Bipsync could not be reached on the last attempt to refresh the tokens; the app "
            "keeps retrying on its own."
        ),
        Status.NEEDS_RECONNECT: (
            "Bipsync no longer accepts this connection's authorization; someone has to "
            "reconnect it."
        ),
        Status.DISCONNECTED: "Disconnected; the tokens were deleted. Connect again to resume.",
    }

    team = models.ForeignKey("accounts.Team", models.CASCADE, related_name="bipsync_connections")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        models.CASCADE,
        null=True,
        blank=True,
        related_name="bipsync_connections",
        help_text="The member whose authorization this is; empty for team-wide connections.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    tenant = models.CharField(max_length=63, validators=[tenant_validator])
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    label = models.CharField(
        max_length=80,
        blank=True,
        help_text='What the team calls it ("Research export"); shown beside the kind.',
    )

    subject_id = models.CharField(
        "Bipsync subject", max_length=64, blank=True, help_text="Who the tokens act as."
    )
    subject_name = models.CharField("Bipsync display name", max_length=200, blank=True)
    scopes = models.TextField(blank=True, help_text="Granted scopes, space separated.")

    access_token = EncryptedTextField(null=True, blank=True)
    refresh_token = EncryptedTextField(null=True, blank=True)
    access_expires_at = models.DateTimeField(null=True, blank=True)
    refresh_expires_at = models.DateTimeField(null=True, blank=True)

    # Client credentials connections: the customer's own application.
    client_id = models.CharField(max_length=200, blank=True)
    client_secret = EncryptedTextField(null=True, blank=True)
    # A machine connection's team (the customer's application serves it), or the team a
    # service account acts in when the token response names it (BIPSYNC_TOKEN_SUBJECT_TEAM_*).
    bipsync_team_id = models.CharField(
        "Bipsync team id", max_length=24, blank=True, validators=[bipsync_id_validator]
    )
    bipsync_team_name = models.CharField("Bipsync team", max_length=200, blank=True)

    version = models.PositiveIntegerField(
        default=0, help_text="Incremented on every change of the tokens."
    )
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    last_error_code = models.CharField(max_length=64, blank=True)
    last_error_message = models.TextField(
        blank=True, help_text="A sentence for people; never contains a token."
    )

    created = models.DateTimeField(default=timezone.now, editable=False)
    updated = models.DateTimeField(auto_now=True)

    objects: ClassVar[ConnectionQuerySet] = ConnectionQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        # No join in the default ordering: the refresh sweep and the token service query this
        # table constantly (the admin orders by team itself).
        ordering = ["tenant", "kind", "created"]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "tenant"],
                condition=models.Q(kind="service_account") & ~models.Q(status="disconnected"),
                name="one_live_service_account_per_team_tenant",
            ),
            # A member may hold one browser and one command-line authorization per tenant; each
            # kind reconnects in place.
            models.UniqueConstraint(
                fields=["team", "user", "tenant", "kind"],
                condition=models.Q(kind__in=PERSONAL) & ~models.Q(status="disconnected"),
                name="one_live_user_connection_per_member_tenant",
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(kind__in=PERSONAL, user__isnull=False)
                    | models.Q(kind__in=TEAM_WIDE, user__isnull=True)
                ),
                name="connection_owner_matches_kind",
                violation_error_message=(
                    "User connections belong to a member; service-account and machine "
                    "connections belong to the team."
                ),
            ),
            models.CheckConstraint(
                condition=~models.Q(kind="client_credentials")
                | (~models.Q(client_id="") & ~models.Q(bipsync_team_id="")),
                name="client_credentials_have_client_and_team",
                violation_error_message="A machine connection needs a client id and a Bipsync team id.",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "access_expires_at"], name="connection_refresh_sweep"),
        ]

    @property
    def kind_spec(self) -> KindSpec:
        """What this kind of connection is and how it behaves (the kinds table)."""
        return spec(self.kind)

    def __str__(self) -> str:
        owner = str(self.team) if self.team_id is not None else "no team"
        if self.user_id is not None:
            owner = f"{owner} / {self.user}"
        return f"{self.get_kind_display()} connection to {self.tenant} for {owner}"

    def __repr__(self) -> str:
        return (
            f"<Connection {self.pk} kind={self.kind} tenant={self.tenant} "
            f"team={self.team_id} status={self.status} version={self.version}>"
        )

    @property
    def status_sentence(self) -> str:
        return self.STATUS_SENTENCES.get(self.status, "")

    @property
    def is_live(self) -> bool:
        return self.status != self.Status.DISCONNECTED

    @property
    def is_usable(self) -> bool:
        """Whether the token service may hand out or obtain a token for it."""
        return self.status in (self.Status.ACTIVE, self.Status.FAILING)

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()

    def _has_secret(self, name: str) -> bool:
        # Looks at the stored state: no decryption.
        field = self._meta.get_field(name)
        assert isinstance(field, EncryptedTextField)
        return field.sealed(self) is not None

    @property
    def has_access_token(self) -> bool:
        return self._has_secret("access_token")

    @property
    def has_refresh_token(self) -> bool:
        return self._has_secret("refresh_token")

    @property
    def access_lifetime(self) -> timedelta | None:
        """How long the stored access token was issued for, when known."""
        if self.access_expires_at is None or self.last_refreshed_at is None:
            return None
        return self.access_expires_at - self.last_refreshed_at

    def access_leeway(self, leeway: timedelta) -> timedelta:
        """``leeway`` scaled to the stored access token's lifetime (:func:`scaled_leeway`)."""
        return scaled_leeway(leeway, self.access_lifetime)

    def access_token_expires_within(self, leeway: timedelta, *, now: datetime) -> bool:
        """True when there is no access token, or it expires within ``leeway`` (scaled to its
        lifetime) of ``now``. A token without a known expiry is trusted until the API refuses
        it."""
        if not self.has_access_token:
            return True
        if self.access_expires_at is None:
            return False
        return self.access_expires_at <= now + self.access_leeway(leeway)

    def is_due_for_refresh(
        self, *, now: datetime, access_window: timedelta, refresh_window: timedelta
    ) -> bool:
        """The access token expires within ``access_window`` (scaled), or the refresh token
        lapses within ``refresh_window`` (:meth:`ConnectionQuerySet.due_for_refresh` in SQL)."""
        if self.access_token_expires_within(access_window, now=now):
            return True
        return (
            self.refresh_expires_at is not None and self.refresh_expires_at <= now + refresh_window
        )

    def set_tokens(
        self,
        *,
        access_token: str,
        refresh_token: str | None,
        access_expires_at: datetime | None,
        refresh_expires_at: datetime | None = None,
        scopes: str | None = None,
        now: datetime | None = None,
    ) -> list[str]:
        """Store a new token pair and mark the connection healthy; bumps ``version``.

        Returns the names of the changed fields for ``save(update_fields=...)``. A ``None``
        ``refresh_token`` keeps the stored one only for client-credentials connections (they
        have none); for the others the server's answer is the truth.
        """
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.access_expires_at = access_expires_at
        self.refresh_expires_at = refresh_expires_at
        if scopes is not None:
            self.scopes = scopes
        self.version += 1
        self.status = self.Status.ACTIVE
        self.last_refreshed_at = now or timezone.now()
        self.clear_failures()
        return [
            "access_token",
            "refresh_token",
            "access_expires_at",
            "refresh_expires_at",
            "scopes",
            "version",
            "status",
            "last_refreshed_at",
            "consecutive_failures",
            "next_retry_at",
            "last_error_code",
            "last_error_message",
            "updated",
        ]

    def wipe_tokens(self) -> list[str]:
        """Forget the tokens (and a machine connection's secret); bumps ``version``."""
        self.access_token = None
        self.refresh_token = None
        self.client_secret = None
        self.access_expires_at = None
        self.refresh_expires_at = None
        self.version += 1
        return [
            "access_token",
            "refresh_token",
            "client_secret",
            "access_expires_at",
            "refresh_expires_at",
            "version",
            "updated",
        ]

    def clear_failures(self) -> None:
        self.consecutive_failures = 0
        self.next_retry_at = None
        self.last_error_code = ""
        self.last_error_message = ""

    def secrets_reencrypted(self, key_id: str) -> None:
        self.record(
            ConnectionEvent.Kind.KEY_ROTATED,
            None,
            f"The stored secrets were re-encrypted with encryption key {key_id}.",
        )

    def record(
        self,
        kind: str,
        actor: User | None = None,
        message: str = "",
    ) -> ConnectionEvent:
        """Append an event to the connection's history (``actor`` None means the system)."""
        return ConnectionEvent.objects.create(
            connection=self, kind=kind, actor=actor, message=message
        )


class ConnectionEvent(models.Model):
    """One line of a connection's history, shown on its page and in the admin."""

    class Kind(models.TextChoices):
        CONNECTED = "connected", "Connected"
        RECONNECTED = "reconnected", "Reconnected"
        TOKEN_ACQUIRED = "token_acquired", "Token acquired"
        REFRESHED = "refreshed", "Refreshed"
        REFRESH_FAILED = "refresh_failed", "Refresh failed"
        NEEDS_RECONNECT = "needs_reconnect", "Needs reconnecting"
        DISCONNECTED = "disconnected", "Disconnected"
        REVOKED = "revoked", "Revoked at Bipsync"
        REVOCATION_FAILED = "revocation_failed", "Revocation failed"
        KEY_ROTATED = "key_rotated", "Encryption key rotated"

    connection = models.ForeignKey(Connection, models.CASCADE, related_name="events")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who did it; empty when the app did it on its own.",
    )
    message = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["connection", "-created"], name="connection_event_history")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.created:%Y-%m-%d %H:%M})"

    @property
    def actor_display(self) -> str:
        return str(self.actor) if self.actor_id is not None else "the app"


# The connect flow's and the notifications' models live beside the code that uses them; importing
# them here registers them with the app (Django only imports models.py).
from bipsync_partner.connections.notifications import ReconnectNotice  # noqa: E402, F401
from bipsync_partner.connections.pending import PendingAuthorizationRecord  # noqa: E402, F401
from bipsync_partner.connections.tenant_metadata import (  # noqa: E402, F401
    TenantMetadata,
    TenantMetadataEvent,
)
from bipsync_partner.connections.webhooks import WebhookReceiver  # noqa: E402, F401
