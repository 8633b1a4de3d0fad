from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable

import kombu.exceptions
import redis
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

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


class DependencyUnavailableMiddleware:
    """A view that fails because Redis is down answers 503 with a sentence instead of a 500.

    Redis carries the Celery broker, the cache and the "queued once" markers, so every page that
    queues work or reads a cache depends on it; an outage is a state of the service, not a bug
    of the page, and says so (with ``Retry-After``). ``/readyz`` names the dependency that is
    down for the orchestrator.
    """

    RETRY_AFTER_SECONDS = 60

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, redis.RedisError | kombu.exceptions.OperationalError):
            return None
        # The type only: a Redis error's text can carry the server's address.
        log.warning("Redis is not answering (%s): answered 503", type(exception).__name__)
        if request.path.endswith(".json") or "application/json" in request.headers.get(
            "Accept", ""
        ):
            response: HttpResponse = JsonResponse(
                {"error": "temporarily_unavailable", "error_description": REDIS_DOWN_SENTENCE},
                status=503,
            )
        else:
            response = render(request, "503.html", {"sentence": REDIS_DOWN_SENTENCE}, status=503)
        response["Retry-After"] = str(self.RETRY_AFTER_SECONDS)
        response["Cache-Control"] = "no-store"
        return response
