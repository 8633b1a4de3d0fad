from django.contrib import admin
from django.urls import include, path

from accounts import views as account_views

admin.site.site_header = "bipsync-partner back office"

urlpatterns = [
    path("", account_views.home, name="home"),
    path("", include("accounts.urls")),
    path("admin/", admin.site.urls),
]
