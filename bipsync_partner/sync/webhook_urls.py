"""The webhook receiver's address (outside /teams/: Bipsync calls it, not a signed-in person)."""

from django.urls import path

from bipsync_partner.sync import webhook_views

app_name = "webhooks"

urlpatterns = [
    path("webhooks/bipsync/<uuid:connection_id>/", webhook_views.receive, name="receive"),
]
