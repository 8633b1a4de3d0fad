"""The Deliveries page of a team (/teams/<team>/deliveries/) and its admin actions."""

from django.urls import path

from bipsync_partner.writes import pages

app_name = "writes"

urlpatterns = [
    path("teams/<slug:team_slug>/deliveries/", pages.deliveries, name="deliveries"),
    path("teams/<slug:team_slug>/deliveries/<uuid:uid>/retry/", pages.retry, name="retry"),
    path("teams/<slug:team_slug>/deliveries/<uuid:uid>/cancel/", pages.cancel, name="cancel"),
]
