from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.http import HttpRequest

from accounts.models import Invitation, Membership, Team, User


class MembershipInline(admin.TabularInline[Membership, Team]):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(User)
class UserAdmin(DjangoUserAdmin):  # type: ignore[type-arg]  # stubs want AbstractUser
    ordering = ["email"]
    list_display = ["email", "name", "is_staff", "is_active", "date_joined"]
    search_fields = ["email", "name"]
    list_filter = ["is_staff", "is_active"]
    fieldsets = (
        (None, {"fields": ["email", "password"]}),
        ("Profile", {"fields": ["name"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    )
    add_fieldsets = ((None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]}),)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin[Team]):
    list_display = ["name", "slug", "created"]
    search_fields = ["name", "slug"]
    inlines = [MembershipInline]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin[Invitation]):
    """Read-only: invitations are made on the team's Members page, which mails the link. The
    stored hash of the link's token is not shown either."""

    list_display = ["email", "team", "role", "invited_by", "created", "expires_at", "accepted_at"]
    list_filter = ["role"]
    search_fields = ["email", "team__name"]
    fields = (
        "team",
        "email",
        "role",
        "invited_by",
        "created",
        "expires_at",
        "accepted_at",
        "accepted_by",
        "revoked_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
