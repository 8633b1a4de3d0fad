"""Admin API endpoints of the REST slice, next to the control app's (same key, same conventions).

| method + path | body | answer |
|---|---|---|
| POST /_sandbox/research/generate | tenant, team, count, seed?, share_with?, private_fraction?, until? | created, seconds |
| POST /_sandbox/research/mutate | tenant, team, fraction, seed?, share_with? | edited, deleted, created, seconds |
| GET/PUT/DELETE /_sandbox/api-settings | rate_limit?, rate_window?, token_response_includes_subject? | effective settings |

``DELETE /_sandbox/api-settings`` drops the run-time overrides and forgets every rate window.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from bipsync_sandbox.api import generation, ratelimit
from bipsync_sandbox.api.models import ApiSettings
from bipsync_sandbox.authserver.server import includes_subject
from bipsync_sandbox.control.admin_api import (
    BadInput,
    _body,
    _json,
    _opt_int,
    _str,
    _str_list,
    admin_api,
)


def _number(data: dict[str, Any], key: str, default: float | None = None) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInput(f"{key} must be a number.")
    return float(value)


def _opt_bool(data: dict[str, Any], key: str) -> bool | None:
    value = data.get(key)
    if value is not None and not isinstance(value, bool):
        raise BadInput(f"{key} must be true, false or null.")
    return value


def _seed(data: dict[str, Any]) -> int | None:
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadInput("seed must be a whole number.")
    return seed


@admin_api(("POST",))
def generate_research(request: HttpRequest) -> HttpResponse:
    data = _body(request)
    count = _opt_int(data, "count", 1)
    if count is None:
        raise BadInput("count is required.")
    try:
        result = generation.generate(
            _str(data, "tenant"),
            _str(data, "team"),
            count,
            seed=_seed(data),
            share_with=_str_list(data, "share_with"),
            private_fraction=_number(data, "private_fraction", 0.1),
            until=generation.parse_until(_str(data, "until")) if data.get("until") else None,
        )
    except generation.GenerationError as exc:
        raise BadInput(str(exc)) from None
    return _json(result.as_dict(), status=201)


@admin_api(("POST",))
def mutate_research(request: HttpRequest) -> HttpResponse:
    data = _body(request)
    try:
        result = generation.mutate(
            _str(data, "tenant"),
            _str(data, "team"),
            _number(data, "fraction"),
            seed=_seed(data),
            share_with=_str_list(data, "share_with"),
        )
    except generation.GenerationError as exc:
        raise BadInput(str(exc)) from None
    return _json(result.as_dict())


@admin_api(("GET", "PUT", "DELETE"))
def api_settings_view(request: HttpRequest) -> HttpResponse:
    row, _ = ApiSettings.objects.get_or_create(pk=ApiSettings.SINGLETON_ID)
    if request.method == "PUT":
        data = _body(request)
        if "rate_limit" in data:
            row.rate_limit = _opt_int(data, "rate_limit", 0)
        if "rate_window" in data:
            row.rate_window = _opt_int(data, "rate_window", 1)
        if "token_response_includes_subject" in data:
            row.token_response_includes_subject = _opt_bool(data, "token_response_includes_subject")
        row.save()
    elif request.method == "DELETE":
        row.rate_limit = None
        row.rate_window = None
        row.token_response_includes_subject = None
        row.save()
        ratelimit.reset()
    limit = ratelimit.current_limit()
    return _json(
        {
            "rate_limit": limit.requests,
            "rate_window": limit.window,
            "page_size_default": settings.SANDBOX_API_PAGE_SIZE_DEFAULT,
            "page_size_max": settings.SANDBOX_API_PAGE_SIZE_MAX,
            "page_over_max": settings.SANDBOX_API_PAGE_OVER_MAX,
            "token_response_includes_subject": includes_subject(),
        }
    )
