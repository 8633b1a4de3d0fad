"""Endpoints, events and deliveries in the Django admin. Signing secrets are never shown or
edited here: they are made and rotated on the team's Webhooks page, which shows a new one once."""

from __future__ import annotations

from django.contrib import admin
from django.db import models

from bipsync_partner.events.models import Delivery, Endpoint, Event

SECRET_FIELDS = ["secret", "previous_secret"]


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin[Endpoint]):
    list_display = ["url", "team", "enabled", "failing_since", "created"]
    list_filter = ["enabled"]
    search_fields = ["url", "team__name"]
    exclude = SECRET_FIELDS
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    readonly_fields = ["previous_secret_until", "failing_since", "created", "created_by"]

    def has_add_permission(self, request: object) -> bool:
        # An endpoint needs a secret, shown once to whoever adds it: the team's page does that.
        return False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin[Event]):
    list_display = ["uid", "type", "team", "created"]
    list_filter = ["type"]
    search_fields = ["uid"]
    readonly_fields = ["uid", "team", "type", "payload", "created"]


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin[Delivery]):
    list_display = [
        "event",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "last_duration_ms",
        "next_attempt_at",
    ]
    list_filter = ["status"]
    raw_id_fields = ["event", "endpoint"]
    readonly_fields = [
        "attempts",
        "first_attempt_at",
        "last_attempt_at",
        "last_status_code",
        "last_duration_ms",
        "last_error",
        "delivered_at",
        "claim_token",
        "lease_until",
        "created",
    ]
