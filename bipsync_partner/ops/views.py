"""Health and metrics endpoints for load balancers, orchestrators and Prometheus."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bipsync_partner.ops import metrics

log = logging.getLogger(__name__)


@never_cache
@require_GET
def liveness(request: HttpRequest) -> HttpResponse:
    """The process answers. Deliberately checks nothing else: a database outage must not get
    every web process restarted."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_redis(url: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


@never_cache
@require_GET
def readiness(request: HttpRequest) -> HttpResponse:
    """Ready to serve: the database, Redis (cache) and the Celery broker all answer."""
    checks: dict[str, Callable[[], None]] = {
        "database": _check_database,
        "redis": lambda: _check_redis(settings.REDIS_URL),
        "broker": lambda: _check_redis(settings.CELERY_BROKER_URL),
    }
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:
            log.warning("Readiness check %s failed: %s", name, type(exc).__name__)
            results[name] = "unavailable"
    down = [name for name, result in results.items() if result != "ok"]
    body: dict[str, object] = {"status": "unavailable" if down else "ok", "checks": results}
    if down:
        body["detail"] = "Not ready: " + ", ".join(_WHAT[name] for name in down) + "."
    return JsonResponse(body, status=503 if down else 200)


#: Each readiness check as a sentence names it, with the setting that points at it.
_WHAT = {
    "database": "PostgreSQL (DATABASE_URL) does not answer",
    "redis": "Redis (REDIS_URL) does not answer",
    "broker": "the Celery broker (CELERY_BROKER_URL) does not answer",
}


@never_cache
@require_GET
def prometheus(request: HttpRequest) -> HttpResponse:
    """Prometheus text format. Guarded by METRICS_BEARER_TOKEN when one is configured."""
    expected = settings.METRICS_BEARER_TOKEN
    if expected:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return HttpResponse(generate_latest(metrics.registry()), content_type=CONTENT_TYPE_LATEST)
