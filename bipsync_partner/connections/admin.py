"""Back-office views of connections and their history.

Tokens and secrets are never shown: the encrypted fields are left out of every list, form and
read-only display, and nothing here reads them (so listing connections decrypts nothing). What the
back office sees instead is whether each secret is present, which encryption key holds it (useful
during a key rotation) and when the access token expires. Everything is read-only: connections are
created and changed by the connect flows and the token service, which keep the history.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from bipsync_partner.connections.fields import EncryptedTextField
from bipsync_partner.connections.models import Connection, ConnectionEvent
from bipsync_partner.connections.tenant_metadata import TenantMetadataEvent

SECRET_FIELDS = ("access_token", "refresh_token", "client_secret")


def _secret_state(conn: Connection, name: str) -> str:
    field = Connection._meta.get_field(name)
    assert isinstance(field, EncryptedTextField)
    sealed = field.sealed(conn)
    if sealed is None:
        return "none"
    return f"stored (key {sealed.key_id})"


class ConnectionEventInline(admin.TabularInline[ConnectionEvent, Connection]):
    model = ConnectionEvent
    extra = 0
    can_delete = False
    fields = ["created", "kind", "actor", "message"]
    readonly_fields = ["created", "kind", "actor", "message"]
    ordering = ["-created", "-id"]
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Connection | None = None) -> bool:
        return False

    def has_change_permission(  # type: ignore[override]  # the stubs disagree with themselves
        self, request: HttpRequest, obj: Connection | None = None
    ) -> bool:
        return False


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin[Connection]):
    list_display = [
        "tenant",
        "kind",
        "team",
        "user",
        "status",
        "subject_name",
        "access_expires_at",
        "last_refreshed_at",
        "consecutive_failures",
        "updated",
    ]
    list_filter = ["status", "kind", "tenant", "team"]
    search_fields = [
        "tenant",
        "subject_id",
        "subject_name",
        "team__name",
        "team__slug",
        "user__email",
        "client_id",
        "label",
    ]
    list_select_related = ["team", "user"]
    date_hierarchy = "created"
    ordering = ["team__name", "tenant", "kind"]
    exclude = SECRET_FIELDS
    fieldsets = [
        (
            None,
            {"fields": ["id", "team", "user", "created_by", "tenant", "kind", "status", "label"]},
        ),
        ("Bipsync identity", {"fields": ["subject_id", "subject_name", "scopes"]}),
        (
            "Tokens (never shown)",
            {
                "fields": [
                    "access_token_state",
                    "refresh_token_state",
                    "access_expires_at",
                    "refresh_expires_at",
                    "version",
                    "last_refreshed_at",
                ]
            },
        ),
        (
            "Machine credentials",
            {
                "fields": [
                    "client_id",
                    "client_secret_state",
                    "bipsync_team_id",
                    "bipsync_team_name",
                ]
            },
        ),
        (
            "Failures",
            {
                "fields": [
                    "consecutive_failures",
                    "next_retry_at",
                    "last_error_code",
                    "last_error_message",
                ]
            },
        ),
        ("Dates", {"fields": ["created", "updated"]}),
    ]
    readonly_fields = [
        "id",
        "team",
        "user",
        "created_by",
        "tenant",
        "kind",
        "status",
        "subject_id",
        "subject_name",
        "scopes",
        "access_token_state",
        "refresh_token_state",
        "access_expires_at",
        "refresh_expires_at",
        "version",
        "last_refreshed_at",
        "client_id",
        "client_secret_state",
        "bipsync_team_id",
        "bipsync_team_name",
        "consecutive_failures",
        "next_retry_at",
        "last_error_code",
        "last_error_message",
        "created",
        "updated",
    ]
    inlines = [ConnectionEventInline]

    @admin.display(description="Access token")
    def access_token_state(self, obj: Connection) -> str:
        return _secret_state(obj, "access_token")

    @admin.display(description="Refresh token")
    def refresh_token_state(self, obj: Connection) -> str:
        return _secret_state(obj, "refresh_token")

    @admin.display(description="Client secret")
    def client_secret_state(self, obj: Connection) -> str:
        return _secret_state(obj, "client_secret")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Connections come from an authorization at Bipsync, never from a form.
        return False

    def has_change_permission(self, request: HttpRequest, obj: Connection | None = None) -> bool:
        # Viewing only (Django shows read-only pages with the view permission).
        return False


@admin.register(ConnectionEvent)
class ConnectionEventAdmin(admin.ModelAdmin[ConnectionEvent]):
    list_display = ["created", "connection", "kind", "actor", "message"]
    list_filter = ["kind", "connection__tenant", "connection__team"]
    search_fields = [
        "message",
        "connection__tenant",
        "connection__subject_name",
        "connection__team__name",
        "actor__email",
    ]
    list_select_related = ["connection__team", "connection__user", "actor"]
    date_hierarchy = "created"
    readonly_fields = ["connection", "kind", "actor", "message", "created"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: ConnectionEvent | None = None
    ) -> bool:
        return False


@admin.register(TenantMetadataEvent)
class TenantMetadataEventAdmin(admin.ModelAdmin[TenantMetadataEvent]):
    """Refused metadata (security events), fallbacks to the last good copy, changed endpoints."""

    list_display = ["created", "issuer", "kind", "message"]
    list_filter = ["kind"]
    search_fields = ["issuer", "message"]
    date_hierarchy = "created"
    readonly_fields = ["issuer", "kind", "message", "created"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: TenantMetadataEvent | None = None
    ) -> bool:
        return False
