"""The webhook receiver a customer's Rules engine calls, and the admin's "new address" button.

The receiver (``POST /webhooks/bipsync/<connection>/?key=…``) is the only partner page without
a session or CSRF token: the address's key is its credential (docs/bipsync.md, "Webhooks").
A wrong key and an unknown connection get the same 404, after the same work. Its answers are
JSON: 202 (queued), 413 (body or ids over the bounds), 429 (over the connection's rate), 503
(Redis, which counts calls and carries the task, is down).
"""

from __future__ import annotations

import logging
from uuid import UUID

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.teams import TeamRequest, team_view
from bipsync_partner.connections import webhooks
from bipsync_partner.connections.visibility import visible_connections
from bipsync_partner.sync import hints

log = logging.getLogger(__name__)

#: What the customer's admin pastes as the rule's body (Mustache, rendered by Bipsync).
BODY_TEMPLATE = '{"event": "{{event}}", "document": "{{document._id}}"}'


def _answer(status: int, code: str, sentence: str, **extra: object) -> JsonResponse:
    response = JsonResponse({"error": code, "message": sentence, **extra}, status=status)
    add_never_cache_headers(response)
    return response


def _not_found() -> JsonResponse:
    return _answer(404, "not_found", "There is no webhook receiver at this address.")


def _body(request: HttpRequest, limit: int) -> bytes | None:
    """The body, or None when it is longer than ``limit`` (read no further than that)."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


@csrf_exempt
@require_POST
def receive(request: HttpRequest, connection_id: UUID) -> HttpResponse:
    receiver = webhooks.find(connection_id, request.GET.get("key", ""))
    if receiver is None:
        return _not_found()
    limit = int(settings.BIPSYNC_WEBHOOK_MAX_BODY_BYTES)
    body = _body(request, limit)
    if body is None:
        return _answer(413, "too_large", f"The body must be at most {limit} bytes.")
    try:
        hints.count_call(connection_id)
    except hints.TooManyHints as over:
        response = _answer(
            429, "rate_limited", "Too many calls for this connection; the full sync catches up."
        )
        response["Retry-After"] = str(over.retry_after)
        return response
    except redis.RedisError:
        log.warning("Webhook call refused: Redis is unavailable")
        response = _answer(503, "unavailable", "The receiver cannot queue work right now.")
        response["Retry-After"] = "30"
        return response
    ids = hints.document_ids(body, int(settings.BIPSYNC_WEBHOOK_MAX_IDS))
    if ids:
        hints.queue_refetch(connection_id, ids)
    response = JsonResponse({"accepted": len(ids)}, status=202)
    add_never_cache_headers(response)
    return response


@require_POST
@team_view(admin=True)
def new_address(request: TeamRequest, connection_id: UUID) -> HttpResponse:
    """Make (or replace) the connection's webhook address and show it, this once."""
    connection = (
        visible_connections(request.team, request.user, request.membership)
        .filter(pk=connection_id)
        .first()
    )
    if connection is None:
        return render(
            request,
            "connections/error.html",
            {"title": "No such connection", "message": "There is no such connection."},
            status=404,
        )
    token = webhooks.rotate(connection.pk, request.user)
    response = render(
        request,
        "sync/webhook_address.html",
        {
            "team": request.team,
            "connection": connection,
            "address": webhooks.address(connection.pk, token),
            "body_template": BODY_TEMPLATE,
        },
    )
    # The page holds the address's key: no cache keeps it, no Referer carries it away.
    add_never_cache_headers(response)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
