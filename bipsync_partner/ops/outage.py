"""A page that needs the database while PostgreSQL is unreachable answers 503 with a sentence.

A restart, a failover or a crash of PostgreSQL makes every query of a request fail with Django's
``OperationalError`` (or ``InterfaceError`` on a connection that died under it); without this
the person sees the generic 500 page and the logs a traceback per request. The page is plain
HTML, rendered without the request: the usual templates ask the database who is signed in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse

log = logging.getLogger(__name__)

SENTENCE = "The database is not answering right now. Please try again in a minute."
PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    "<title>Temporarily unavailable</title></head>"
    f"<body><h1>Temporarily unavailable</h1><p>{SENTENCE}</p></body></html>"
)
# Seconds a client should wait: a restart or failover takes about this long.
RETRY_AFTER = "30"


class DatabaseOutageMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        # The exception's text can carry the server's address; its type is enough here.
        log.warning("The database did not answer (%s); answered 503", type(exception).__name__)
        response = HttpResponse(PAGE, status=503, content_type="text/html; charset=utf-8")
        response["Retry-After"] = RETRY_AFTER
        return response
