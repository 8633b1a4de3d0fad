from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import kombu.exceptions
import redis
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.html import escape

from bipsync_partner.ops import context

log = logging.getLogger(__name__)

# Accept a proxy's request id only when it is short and plain, so it cannot forge log lines.
_SAFE_ID = re.compile(r"^[A-Za-z0-9\-_.]{8,64}$")


class RequestIdMiddleware:
    """Gives every request an id, on every log line it causes and in the X-Request-ID reply."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        with context.bound(request=request_id):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


#: What a person is told when Redis (cache, coordination markers, Celery broker) does not answer.
REDIS_DOWN_SENTENCE = (
    "This page could not be completed because Redis, which holds the task queue and the cache, "
    "is not answering. Please try again in a minute."
)
#: What a person is told when PostgreSQL does not answer (a restart, a failover, a crash).
DATABASE_DOWN_SENTENCE = "The database is not answering right now. Please try again in a minute."


@dataclass(frozen=True)
class Dependency:
    name: str
    #: What a view raises when it cannot reach the dependency.
    errors: tuple[type[Exception], ...]
    sentence: str
    #: Seconds a client should wait: about what a restart or failover takes.
    retry_after: int
    #: The usual page asks the database who is signed in (the templates' context processors), so
    #: a database outage gets a page rendered without the request.
    plain_page: bool


POSTGRESQL = Dependency(
    "PostgreSQL",
    # InterfaceError: a connection that died under the request.
    (OperationalError, InterfaceError),
    DATABASE_DOWN_SENTENCE,
    retry_after=30,
    plain_page=True,
)
REDIS = Dependency(
    "Redis",
    (redis.RedisError, kombu.exceptions.OperationalError),
    REDIS_DOWN_SENTENCE,
    retry_after=60,
    plain_page=False,
)
DEPENDENCIES: tuple[Dependency, ...] = (POSTGRESQL, REDIS)


class DependencyUnavailableMiddleware:
    """A view that fails because PostgreSQL or Redis is down answers 503 with a sentence (and
    ``Retry-After``) instead of a 500 and a traceback per request.

    Redis carries the Celery broker, the cache and the "queued once" markers; PostgreSQL
    everything else. An outage is a state of the service, not a bug of the page, and says so.
    ``/readyz`` names the dependency that is down for the orchestrator.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        down = next((d for d in DEPENDENCIES if isinstance(exception, d.errors)), None)
        if down is None:
            return None
        return _answer_unavailable(request, down, exception)


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's, except that a session the database cannot save (PostgreSQL went away while
    the page was being made) answers the outage's 503 and sentence.

    The session is saved in the response phase, after the view, so
    :class:`DependencyUnavailableMiddleware` never sees that error: Django's database backend
    reads any error of an update as the session deleted under the request
    (``SessionInterrupted``), and a new session's error goes through as it is; the soak saw
    such a page answer 500. Either way the database error is in the exception's chain.
    """

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        try:
            return super().process_response(request, response)
        except Exception as exc:
            cause = _database_error_in(exc)
            if cause is None:
                raise
            return _answer_unavailable(request, POSTGRESQL, cause)


def _database_error_in(exc: BaseException) -> BaseException | None:
    """The database error ``exc`` is, or was raised while handling, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, POSTGRESQL.errors):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _answer_unavailable(
    request: HttpRequest, down: Dependency, exception: BaseException
) -> HttpResponse:
    # The type only: the error's text can carry the server's address.
    log.warning("%s is not answering (%s): answered 503", down.name, type(exception).__name__)
    response = _unavailable(request, down)
    response["Retry-After"] = str(down.retry_after)
    response["Cache-Control"] = "no-store"
    return response


def _unavailable(request: HttpRequest, down: Dependency) -> HttpResponse:
    if request.path.endswith(".json") or "application/json" in request.headers.get("Accept", ""):
        body = {"error": "temporarily_unavailable", "error_description": down.sentence}
        return JsonResponse(body, status=503)
    if down.plain_page:
        return HttpResponse(_PLAIN_PAGE.format(sentence=escape(down.sentence)), status=503)
    return render(request, "503.html", {"sentence": down.sentence}, status=503)


_PLAIN_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    "<title>Temporarily unavailable</title></head>"
    "<body><h1>Temporarily unavailable</h1><p>{sentence}</p></body></html>"
)
