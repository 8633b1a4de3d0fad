"""Back office: runs, schedules (with the stale flag), team settings and the synced tables.

Synced rows are Bipsync's data: read-only here (the next sync would overwrite any edit).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from bipsync_partner.sync.models import (
    ResearchDocument,
    SyncedContentType,
    SyncedField,
    SyncRun,
    SyncSchedule,
    TeamSyncSettings,
)


class ReadOnlyAdmin(admin.ModelAdmin[Any]):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "connection",
        "status",
        "trigger",
        "queued_at",
        "finished_at",
        "seen_count",
        "total_reported",
        "created_count",
        "updated_count",
        "unchanged_count",
        "deleted_count",
        "pages",
        "error_message",
    ]
    list_filter = ["status", "trigger", "connection__kind", "connection__tenant"]
    search_fields = ["connection__tenant", "connection__team__name", "error_message"]
    list_select_related = ["connection", "connection__team", "connection__user"]
    date_hierarchy = "queued_at"
    readonly_fields = [f.name for f in SyncRun._meta.fields]


class StaleFilter(admin.SimpleListFilter):
    title = "stale"
    parameter_name = "stale"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Stale (no success in three periods)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(pk__in=SyncSchedule.objects.stale().values("pk"))
        return queryset


@admin.register(SyncSchedule)
class SyncScheduleAdmin(admin.ModelAdmin[SyncSchedule]):
    list_display = [
        "connection",
        "enabled",
        "interval_seconds",
        "next_due_at",
        "last_success_at",
        "stale",
    ]
    list_filter = [StaleFilter, "enabled", "connection__kind", "connection__tenant"]
    search_fields = ["connection__tenant", "connection__team__name"]
    list_select_related = ["connection", "connection__team", "connection__user"]
    fields = ["connection", "enabled", "interval_seconds", "next_due_at", "last_success_at"]
    readonly_fields = ["connection", "last_success_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(boolean=True, description="stale")
    def stale(self, obj: SyncSchedule) -> bool:
        return obj.is_stale(timezone.now())


@admin.register(TeamSyncSettings)
class TeamSyncSettingsAdmin(admin.ModelAdmin[TeamSyncSettings]):
    list_display = ["team", "sync_user_connections", "updated"]
    list_filter = ["sync_user_connections"]
    search_fields = ["team__name", "team__slug"]


class DeletedFilter(admin.SimpleListFilter):
    title = "deleted at Bipsync"
    parameter_name = "deleted"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "Present"), ("yes", "Deleted")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(deleted_at__isnull=True)
        return queryset


@admin.register(ResearchDocument)
class ResearchDocumentAdmin(ReadOnlyAdmin):
    list_display = [
        "title",
        "bipsync_id",
        "team",
        "tenant",
        "content_type_bid",
        "author_bid",
        "bipsync_modified",
        "deleted_at",
    ]
    list_filter = [DeletedFilter, "team", "tenant"]
    search_fields = ["title", "=bipsync_id", "=author_bid"]
    list_select_related = ["team"]
    show_full_result_count = False  # COUNT(*) over a large table on every page is wasteful


@admin.register(SyncedContentType)
class SyncedContentTypeAdmin(ReadOnlyAdmin):
    list_display = ["display_name", "name", "bipsync_id", "team", "tenant", "deleted_at"]
    list_filter = [DeletedFilter, "team", "tenant"]
    search_fields = ["name", "display_name", "=bipsync_id"]


@admin.register(SyncedField)
class SyncedFieldAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "api_identifier",
        "field_type",
        "content_type_bid",
        "team",
        "tenant",
        "disabled",
        "deleted_at",
    ]
    list_filter = [DeletedFilter, "field_type", "disabled", "team", "tenant"]
    search_fields = ["name", "api_identifier", "=bipsync_id"]
