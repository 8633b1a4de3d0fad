"""/api/v1/: the API's routes, then a problem for every other path under it. Each route's view is
wrapped so that answers ninja makes without an exception (405) are problems too."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, path, re_path

from bipsync_partner.api import problems
from bipsync_partner.api.main import api


def _as_problems(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return problems.from_response(request, view(request, *args, **kwargs))

    return wrapper


def _unknown(request: HttpRequest, rest: str = "") -> HttpResponse:
    return problems.response(
        request, problems.Problem(404, "There is nothing at this address in the API.")
    )


def _routes() -> tuple[list[URLPattern | URLResolver], str, str]:
    routes, ninja_app, ninja_namespace = api.urls
    for route in routes:
        if isinstance(route, URLPattern):
            route.callback = _as_problems(route.callback)
    return routes, ninja_app, ninja_namespace


urlpatterns = [
    path("api/v1/", _routes()),
    re_path(r"^api/(?P<rest>.*)$", _unknown),
]
