"""The Webhooks pages of a team (/teams/<team>/webhooks/), for its admins."""

from django.urls import path

from bipsync_partner.events import pages

app_name = "events"

urlpatterns = [
    path("teams/<slug:team_slug>/webhooks/", pages.endpoints, name="endpoints"),
    path("teams/<slug:team_slug>/webhooks/<uuid:endpoint_id>/", pages.endpoint, name="endpoint"),
    path(
        "teams/<slug:team_slug>/webhooks/<uuid:endpoint_id>/enabled/",
        pages.set_enabled,
        name="set_enabled",
    ),
    path(
        "teams/<slug:team_slug>/webhooks/<uuid:endpoint_id>/rotate/",
        pages.rotate,
        name="rotate",
    ),
    path(
        "teams/<slug:team_slug>/webhooks/<uuid:endpoint_id>/deliveries/<int:delivery_id>/replay/",
        pages.replay,
        name="replay",
    ),
]
