"""The API keys page of a team."""

from django.urls import path

from bipsync_partner.api import pages

app_name = "api"

urlpatterns = [
    path("teams/<slug:team_slug>/api-keys/", pages.keys, name="keys"),
    path("teams/<slug:team_slug>/api-keys/new/", pages.create, name="create"),
    path("teams/<slug:team_slug>/api-keys/<int:key_id>/revoke/", pages.revoke, name="revoke"),
]
