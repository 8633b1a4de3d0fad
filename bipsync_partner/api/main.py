"""The API object: its routers, its docs, and every error as a problem (:mod:`.problems`).

django-ninja rather than Django REST framework with drf-spectacular: the schemas are pydantic
models and the views plain functions, as the project's views are, and the OpenAPI 3.1 document
is generated from the very types that validate the requests, so it cannot drift from the code
(README, "HTTP API").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Swagger
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.operation import Operation

from bipsync_partner.api import changes, connections, research, resources, writes
from bipsync_partner.api import problems as p
from bipsync_partner.api.auth import unauthorized

logger = logging.getLogger(__name__)

#: The docs page loads only the app's own files (ninja's bundled Swagger UI).
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; frame-ancestors 'none'"
)


def _with_csp(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        answer = view(request, *args, **kwargs)
        answer["Content-Security-Policy"] = DOCS_CSP
        return answer

    return wrapper


class Api(NinjaAPI):
    def get_openapi_operation_id(self, operation: Operation) -> str:
        """The view's own name ("list_research"): what generated clients call the function."""
        return operation.view_func.__name__


api = Api(
    title="bipsync-partner API",
    version="1",
    description=(
        "The partner's HTTP API: connections, synced research, the change feed and writes to "
        "Bipsync. Authenticate with `Authorization: Bearer <API key>`; every error is an RFC "
        "9457 problem (`application/problem+json`)."
    ),
    urls_namespace="api-v1",
    docs=Swagger(),
    docs_decorator=_with_csp,
)
for module in (connections, research, resources, changes, writes):
    api.add_router("/", module.router)


@api.exception_handler(p.Problem)
def _problem(request: HttpRequest, exc: p.Problem) -> HttpResponse:
    return p.response(request, exc)


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return p.response(request, p.validation(exc.errors))


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return p.response(request, unauthorized("Send an API key as 'Authorization: Bearer <key>'."))


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if exc.status_code == 400:
        # ninja's only own 400: a body that is not JSON.
        return p.response(request, p.bad_parameter("body", "body", f"{exc}."))
    return p.response(request, p.Problem(exc.status_code, str(exc)))


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return p.response(request, p.Problem(404, "Not found."))


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return p.response(
        request,
        p.Problem(413, "The request body is larger than this server accepts.", kind="too-large"),
    )
