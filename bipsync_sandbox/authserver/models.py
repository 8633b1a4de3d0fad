"""OAuth state of the emulated Bipsync: applications, codes, tokens, device codes.

Secrets and tokens are stored only as SHA-256 digests. They are high-entropy random strings, so a
plain digest is enough to make a database dump useless, and it keeps the token endpoint fast (a
PBKDF2 check per request would cap the sandbox far below the refresh rate it must sustain).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime

from django.db import models
from django.utils import timezone

from bipsync_sandbox.identity.models import Team, Tenant, User, new_object_id

AUTHORIZATION_CODE = "authorization_code"
REFRESH_TOKEN = "refresh_token"
CLIENT_CREDENTIALS = "client_credentials"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_TYPES = (AUTHORIZATION_CODE, REFRESH_TOKEN, CLIENT_CREDENTIALS, DEVICE_CODE)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class Application(models.Model):
    """An OAuth application ("client") registered with Bipsync [doc].

    Partner applications are global and enabled per tenant by the customer [doc]; a customer's own
    machine-to-machine application belongs to one team (``owner_team``) of one tenant.
    """

    client_id = models.CharField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    confidential = models.BooleanField(default=True)
    client_secret_hash = models.CharField(max_length=64, blank=True, default="")
    redirect_uris = models.JSONField(default=list, blank=True)
    grant_types = models.JSONField(default=list, blank=True)
    scopes = models.JSONField(default=list, blank=True)
    service_account = models.BooleanField(default=False)
    owner_team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="own_applications"
    )
    tenants = models.ManyToManyField(Tenant, related_name="applications", blank=True)
    # Per-application lifetime overrides (seconds); NULL = the run-time or settings default.
    access_token_lifetime = models.PositiveIntegerField(null=True, blank=True)
    refresh_token_lifetime = models.PositiveIntegerField(null=True, blank=True)
    code_lifetime = models.PositiveIntegerField(null=True, blank=True)
    device_code_lifetime = models.PositiveIntegerField(null=True, blank=True)
    device_poll_interval = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.client_id})"

    def set_secret(self, secret: str) -> None:
        self.client_secret_hash = digest(secret)

    # -- authlib ClientMixin protocol (duck-typed; authlib does not check the class) --------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        # Exact registered redirect URIs only [doc]: the request must name one.
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        requested = (scope or "").split()
        if any(item not in self.scopes for item in requested):
            return None
        return " ".join(dict.fromkeys(requested))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        if not self.confidential or not self.client_secret_hash:
            return False
        return secrets.compare_digest(self.client_secret_hash, digest(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.confidential:
            return method in {"client_secret_basic", "client_secret_post"}
        return method == "none"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and AUTHORIZATION_CODE in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


class ServiceAccount(models.Model):
    """The identity a service-account application acts as inside one customer team [doc]."""

    id = models.CharField(primary_key=True, max_length=24, default=new_object_id, editable=False)
    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="service_accounts"
    )
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="service_accounts")
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["application", "team"], name="sandbox_service_account_per_team"
            )
        ]

    def __str__(self) -> str:
        return self.name


class PrincipalKind(models.TextChoices):
    USER = "user", "User"
    SERVICE_ACCOUNT = "service_account", "Service account"
    TEAM = "team", "Team"


class AuthorizationCode(models.Model):
    code_hash = models.CharField(max_length=64, unique=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE)
    application = models.ForeignKey(Application, on_delete=models.CASCADE)
    user = models.ForeignKey(User, on_delete=models.CASCADE)
    service_account = models.ForeignKey(
        ServiceAccount, null=True, blank=True, on_delete=models.CASCADE
    )
    redirect_uri = models.TextField()
    scope = models.TextField(blank=True, default="")
    code_challenge = models.CharField(max_length=128)
    code_challenge_method = models.CharField(max_length=10)
    # Every token issued from this code carries this grant id, so that a reused code can revoke
    # them (RFC 6749 §4.1.2).
    grant_id = models.UUIDField(default=uuid.uuid4, db_index=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"authorization code {self.pk}"

    # authlib AuthorizationCodeMixin protocol
    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()


class Token(models.Model):
    """One issued access token and (optionally) its refresh token: "the pair" of the reference."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE)
    application = models.ForeignKey(Application, on_delete=models.CASCADE)
    grant_id = models.UUIDField(db_index=True)
    grant_type = models.CharField(max_length=64)
    kind = models.CharField(max_length=20, choices=PrincipalKind.choices)
    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.CASCADE)
    service_account = models.ForeignKey(
        ServiceAccount, null=True, blank=True, on_delete=models.CASCADE
    )
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE)
    # Scope of this access token, and the scope consented for the grant (which a refresh may
    # narrow for the access token but keeps for the new refresh token, RFC 6749 §6).
    scope = models.TextField(blank=True, default="")
    granted_scope = models.TextField(blank=True, default="")
    access_hash = models.CharField(max_length=64, unique=True)
    refresh_hash = models.CharField(max_length=64, unique=True, null=True, blank=True)
    access_expires_at = models.DateTimeField()
    refresh_expires_at = models.DateTimeField(null=True, blank=True)
    access_revoked_at = models.DateTimeField(null=True, blank=True)
    refresh_revoked_at = models.DateTimeField(null=True, blank=True)
    revoke_reason = models.CharField(max_length=32, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["application", "grant_type"])]

    def __str__(self) -> str:
        return f"token {self.pk} ({self.kind})"

    # authlib TokenMixin protocol (refresh and revocation grants)
    def check_client(self, client: Application) -> bool:
        return self.application_id == client.pk

    def get_scope(self) -> str:
        return self.granted_scope

    def is_access_active(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.access_revoked_at is None and self.access_expires_at > now


class DeviceStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    CONSUMED = "consumed", "Consumed"


class DeviceCode(models.Model):
    """An RFC 8628 device authorization: the device code (hashed) and the user code."""

    device_code_hash = models.CharField(max_length=64, unique=True)
    user_code = models.CharField(max_length=16, db_index=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE)
    application = models.ForeignKey(Application, on_delete=models.CASCADE)
    scope = models.TextField(blank=True, default="")
    status = models.CharField(
        max_length=10, choices=DeviceStatus.choices, default=DeviceStatus.PENDING
    )
    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.CASCADE)
    service_account = models.ForeignKey(
        ServiceAccount, null=True, blank=True, on_delete=models.CASCADE
    )
    interval = models.PositiveIntegerField()
    last_polled_at = models.DateTimeField(null=True, blank=True)
    grant_id = models.UUIDField(default=uuid.uuid4)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"device authorization {self.pk} ({self.status})"

    # authlib DeviceCredentialMixin protocol
    def get_client_id(self) -> str:
        return self.application.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_user_code(self) -> str:
        return self.user_code

    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()
