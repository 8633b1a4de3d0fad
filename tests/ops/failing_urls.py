"""The app's URLs plus views that fail, to see the error pages as a visitor would (Django's
handlers with the app's templates); tests select it with ``@pytest.mark.urls``."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import path

from bipsync_partner.urls import urlpatterns as app_urlpatterns


def broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in a view")


def session_into_an_outage(request: HttpRequest) -> HttpResponse:
    """Changes the session, then PostgreSQL goes away (the connection is pointed at the port in
    the ``port`` query parameter, which nobody listens on) before the response phase saves it.
    The test restores the connection."""
    request.session["seen"] = True
    connection.close()
    connection.settings_dict["PORT"] = request.GET["port"]
    return HttpResponse("made before the outage")


urlpatterns = [
    path("broken/", broken),
    path("session-into-an-outage/", session_into_an_outage),
    *app_urlpatterns,
]
