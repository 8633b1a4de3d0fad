"""Sync pages, under /teams/<team>/sync/ and /teams/<team>/research/."""

from django.urls import path

from bipsync_partner.sync import views, webhook_views

app_name = "sync"

urlpatterns = [
    path("teams/<slug:team_slug>/sync/", views.overview, name="overview"),
    path("teams/<slug:team_slug>/sync/settings/", views.team_settings, name="team_settings"),
    path("teams/<slug:team_slug>/sync/<uuid:connection_id>/", views.history, name="history"),
    path("teams/<slug:team_slug>/sync/<uuid:connection_id>/now/", views.sync_now, name="now"),
    path(
        "teams/<slug:team_slug>/sync/<uuid:connection_id>/schedule/",
        views.schedule,
        name="schedule",
    ),
    path(
        "teams/<slug:team_slug>/sync/runs/<int:run_id>/progress.json",
        views.progress,
        name="progress",
    ),
    path(
        "teams/<slug:team_slug>/sync/<uuid:connection_id>/webhook/",
        webhook_views.new_address,
        name="webhook_address",
    ),
    path("teams/<slug:team_slug>/research/", views.research, name="research"),
    path("teams/<slug:team_slug>/research/<int:document_id>/", views.document, name="document"),
    path(
        "teams/<slug:team_slug>/research/<int:document_id>/attachments/<str:attachment_id>/",
        views.attachment,
        name="attachment",
    ),
]
