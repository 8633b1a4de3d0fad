from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views

app_name = "accounts"

# The team's overview (/teams/<team>/) is the project's, named by accounts.teams.TEAM_HOME.
urlpatterns = [
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/switch-team/", views.switch_team, name="switch_team"),
    path("invitations/", views.invitation, name="invitation"),
    path("teams/<slug:team_slug>/members/", views.members, name="members"),
    path("teams/<slug:team_slug>/members/invite/", views.invite, name="invite"),
    path(
        "teams/<slug:team_slug>/members/invitations/<int:invitation_id>/revoke/",
        views.revoke_invitation,
        name="revoke_invitation",
    ),
    path(
        "teams/<slug:team_slug>/members/<int:membership_id>/role/",
        views.change_role,
        name="change_role",
    ),
    path(
        "teams/<slug:team_slug>/members/<int:membership_id>/remove/",
        views.remove_member,
        name="remove_member",
    ),
]
