"""Per-token rate limit of the REST API ([choice]: Bipsync has limits but does not document them).

A window per access token, counted in Postgres so that every gunicorn worker shares it: one
upsert per request on an UNLOGGED table (no extra service for partners to run in their CI, and the
sandbox already holds a connection). Over the limit the API answers 429 with ``Retry-After``, the
seconds until the window ends.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from bipsync_sandbox.api.errors import ApiError
from bipsync_sandbox.api.models import ApiSettings

# A window opens at a token's first request and lasts ``window`` seconds; the next request after
# that opens a new one. One statement, so concurrent workers cannot lose a count.
_HIT_SQL = (
    "INSERT INTO sandbox_api_ratewindow AS r (token_id, started_at, hits) VALUES (%s, %s, 1) "
    "ON CONFLICT (token_id) DO UPDATE SET "
    "hits = CASE WHEN r.started_at > EXCLUDED.started_at - %s THEN r.hits + 1 ELSE 1 END, "
    "started_at = CASE WHEN r.started_at > EXCLUDED.started_at - %s "
    "THEN r.started_at ELSE EXCLUDED.started_at END "
    "RETURNING hits, started_at"
)


@dataclass(frozen=True)
class Limit:
    requests: int  # 0 = no limit
    window: int  # seconds


_SETTINGS_SQL = "SELECT rate_limit, rate_window FROM sandbox_api_apisettings WHERE id = %s"


def current_limit() -> Limit:
    """The run-time override (admin API) if set, else the settings."""
    with connection.cursor() as cursor:
        cursor.execute(_SETTINGS_SQL, [ApiSettings.SINGLETON_ID])
        row = cursor.fetchone()
    requests = settings.SANDBOX_API_RATE_LIMIT
    window = settings.SANDBOX_API_RATE_WINDOW
    if row is not None:
        if row[0] is not None:
            requests = row[0]
        if row[1] is not None:
            window = row[1]
    return Limit(requests=requests, window=max(1, window))


def hit(token_id: int, limit: Limit, now: float | None = None) -> None:
    """Count one request of ``token_id``; raise a 429 :class:`ApiError` when over the limit."""
    if limit.requests <= 0:
        return
    moment = time.time() if now is None else now
    with connection.cursor() as cursor:
        cursor.execute(_HIT_SQL, [token_id, moment, limit.window, limit.window])
        hits, started_at = cursor.fetchone()
    if hits > limit.requests:
        retry_after = max(1, math.ceil(started_at + limit.window - moment))
        raise ApiError(
            429,
            "rate_limited",
            f"Too many requests: at most {limit.requests} per {limit.window} s per access token.",
            headers={"Retry-After": str(retry_after)},
        )


def reset() -> int:
    """Forget every window (the admin API's reset)."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM sandbox_api_ratewindow")
        return int(cursor.rowcount)
