from django.contrib import admin
from django.urls import include, path

from accounts import views as account_views
from bipsync_partner.ops import views as ops_views
from bipsync_partner.teamhome import views as teamhome_views

admin.site.site_header = "bipsync-partner back office"

urlpatterns = [
    path("", account_views.home, name="home"),
    # accounts.teams.TEAM_HOME: where a signed-in user lands, the team's overview.
    path("teams/<slug:team_slug>/", teamhome_views.team_home, name="team_home"),
    path("", include("accounts.urls")),
    path("", include("bipsync_partner.connections.urls")),
    path("", include("bipsync_partner.sync.urls")),
    path("", include("bipsync_partner.sync.webhook_urls")),
    path("", include("bipsync_partner.writes.urls")),
    path("", include("bipsync_partner.events.urls")),
    path("admin/", admin.site.urls),
    path("healthz", ops_views.liveness, name="healthz"),
    path("readyz", ops_views.readiness, name="readyz"),
    path("metrics", ops_views.prometheus, name="metrics"),
]
