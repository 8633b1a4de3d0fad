"""Error answers of the REST API.

Statuses follow Bipsync's documented response codes (platform reference, "Errors"): 400 bad input,
401 token invalid or missing scope, 403 the caller's IP address is not allow-listed, 404, 405, 406,
429 (rate limit, [choice]) with ``Retry-After``. Every 401 carries an RFC 6750 §3
``WWW-Authenticate: Bearer`` challenge.
"""

from __future__ import annotations

from django.http import HttpResponse, JsonResponse

from bipsync_sandbox.api.render import json_response


class ApiError(Exception):
    """Raised anywhere in a REST view; rendered by :func:`error_response`."""

    def __init__(
        self,
        status: int,
        error: str,
        description: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.headers = headers or {}


def bad_request(description: str) -> ApiError:
    return ApiError(400, "invalid_request", description)


def _quote(value: str) -> str:
    # RFC 6750 §3: auth-param values are quoted-strings; keep them free of quotes and backslashes.
    return '"' + value.replace("\\", "").replace('"', "'") + '"'


def bearer_challenge(
    realm: str, error: str | None = None, description: str | None = None, scope: str | None = None
) -> str:
    params = [f"realm={_quote(realm)}"]
    if error:
        params.append(f"error={_quote(error)}")
    if description:
        params.append(f"error_description={_quote(description)}")
    if scope:
        params.append(f"scope={_quote(scope)}")
    return "Bearer " + ", ".join(params)


def unauthorized(
    realm: str,
    error: str | None,
    description: str,
    *,
    scope: str | None = None,
    status: int = 401,
) -> ApiError:
    """A 401 with its challenge. Without credentials RFC 6750 §3.1 says: no error code."""
    challenge = bearer_challenge(realm, error, description if error else None, scope)
    return ApiError(
        status,
        error or "unauthorized",
        description,
        headers={"WWW-Authenticate": challenge},
    )


def error_response(exc: ApiError) -> HttpResponse:
    body = {"error": exc.error, "error_description": exc.description}
    response = json_response(body, status=exc.status)
    for name, value in exc.headers.items():
        response[name] = value
    response["Cache-Control"] = "no-store"
    return response


def not_found_response(description: str = "There is no such API endpoint.") -> JsonResponse:
    return JsonResponse({"error": "not_found", "error_description": description}, status=404)
