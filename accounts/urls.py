from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/switch-team/", views.switch_team, name="switch_team"),
    path("teams/<slug:team_slug>/", views.team, name="team"),
    path("teams/<slug:team_slug>/members/", views.members, name="members"),
]
