"""API keys in the back office: staff create installation keys (no team) and team keys, and
revoke any. The hash is never shown; a new key is shown once, on the page after saving."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers

from bipsync_partner.api.keys import create_key
from bipsync_partner.api.models import ApiKey, IdempotencyKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    list_display = ("name", "team", "masked", "scopes", "created", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "team__name")
    fields = ("name", "team", "scopes", "masked", "created", "last_used_at", "revoked_at")
    readonly_fields = ("masked", "created", "last_used_at", "revoked_at")
    actions = ("revoke",)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        # A key's team and scopes are what it was made with; revoke it and make another.
        if obj is not None:
            return (*self.readonly_fields, "team", "scopes")
        return self.readonly_fields

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        new = create_key(obj.team, obj.name, obj.scopes, request.user)  # type: ignore[arg-type]
        obj.pk, obj.prefix = new.key.pk, new.key.prefix
        request._new_api_key = new  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        """The new key, shown once on this answer: not in a message, which the cookie or
        session storage of messages would keep."""
        answer = render(
            request,
            "api/admin_key_created.html",
            {**self.admin_site.each_context(request), "new": request._new_api_key},  # type: ignore[attr-defined]
        )
        add_never_cache_headers(answer)
        return answer

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            key.revoke(request.user)
        self.message_user(request, "The keys were revoked.", messages.SUCCESS)


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin[IdempotencyKey]):
    list_display = ("team", "key", "write", "created")
    search_fields = ("key",)
    readonly_fields = ("team", "key", "request_hash", "write", "created")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
