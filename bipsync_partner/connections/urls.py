"""Connect pages. Team pages live under /teams/<team>/connections/; the callback is one address
for every team and kind (register SITE_URL + /connections/callback/ at Bipsync)."""

from django.urls import path

from bipsync_partner.connections import scope_views, views

app_name = "connections"

urlpatterns = [
    path("connections/callback/", views.callback, name="callback"),
    path("connections/confirm/<uuid:record_id>/", views.confirm_subject, name="confirm_subject"),
    path("teams/<slug:team_slug>/connections/", views.connection_list, name="list"),
    path("teams/<slug:team_slug>/connections/connect/", views.connect_start, name="connect"),
    path("teams/<slug:team_slug>/connections/machine/", views.machine_new, name="machine_new"),
    path(
        "teams/<slug:team_slug>/connections/<uuid:connection_id>/",
        views.connection_detail,
        name="detail",
    ),
    path(
        "teams/<slug:team_slug>/connections/<uuid:connection_id>/disconnect/",
        views.disconnect,
        name="disconnect",
    ),
    path(
        "teams/<slug:team_slug>/connections/<uuid:connection_id>/label/",
        views.label,
        name="label",
    ),
    path(
        "teams/<slug:team_slug>/connections/<uuid:connection_id>/machine/",
        views.machine_reconnect,
        name="machine_reconnect",
    ),
    path(
        "teams/<slug:team_slug>/connections/<uuid:connection_id>/reconsent/",
        scope_views.reconsent,
        name="reconsent",
    ),
]
