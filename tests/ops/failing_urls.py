"""The app's URLs plus one view that fails, to see the 500 page as a visitor would (Django's
handler500 with the app's templates); tests select it with ``@pytest.mark.urls``."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from bipsync_partner.urls import urlpatterns as app_urlpatterns


def broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in a view")


urlpatterns = [path("broken/", broken), *app_urlpatterns]
