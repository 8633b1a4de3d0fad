"""``POST {api}/v1/graphql``: a GraphQL request through the REST pipeline, then strawberry.

The pipeline (:mod:`bipsync_sandbox.api.pipeline`) authenticates, applies faults of the target
"graphql" and the per-token rate limit; scopes are checked per field (:mod:`.context`), so
``rest_api:read`` alone reads nothing here. Answers follow "GraphQL over HTTP": 200 with ``data``
and/or ``errors``, also for limits and field errors; a body that is no GraphQL request is a 400,
one over the size limit a 413. Every answer carries ``extensions.queryAnalysis``.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from typing import Any

import strawberry
from django.conf import settings
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse
from graphql import GraphQLError
from strawberry.extensions import MaskErrors
from strawberry.types import ExecutionContext

from bipsync_sandbox.api import catalogue
from bipsync_sandbox.api.auth import Principal
from bipsync_sandbox.api.errors import ApiError, bad_request
from bipsync_sandbox.api.graph import limits, schema
from bipsync_sandbox.api.graph.context import GraphContext
from bipsync_sandbox.api.pipeline import api_endpoint
from bipsync_sandbox.api.render import json_text
from bipsync_sandbox.identity.models import Tenant

log = logging.getLogger(__name__)


class _Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Errors of the query (scopes, limits, bad arguments) are the client's; only a resolver
        # that broke is worth a log line.
        for error in errors:
            if error.original_error is not None and not isinstance(
                error.original_error, GraphQLError
            ):
                log.error("GraphQL resolver failed", exc_info=error.original_error)


def _unexpected(error: GraphQLError) -> bool:
    return error.original_error is not None and not isinstance(error.original_error, GraphQLError)


@functools.cache
def built(with_me: bool) -> strawberry.Schema:
    return _Schema(
        query=schema.QueryWithMe if with_me else schema.Query,
        # Factories, not instances: each request gets its own extension objects.
        extensions=[
            lambda: limits.depth_limiter(settings.SANDBOX_GRAPHQL_MAX_DEPTH),
            limits.Analysis,
            lambda: MaskErrors(
                should_mask_error=_unexpected, error_message="Internal server error."
            ),
        ],
    )


def _request(request: HttpRequest, max_bytes: int) -> tuple[str, dict[str, Any] | None, str | None]:
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, "request_too_large", f"A GraphQL request is at most {max_bytes} bytes.")
    raw = request.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ApiError(413, "request_too_large", f"A GraphQL request is at most {max_bytes} bytes.")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise bad_request(
            'The body must be JSON: {"query": "...", "variables": {...}, "operationName": ...}.'
        ) from None
    if not isinstance(body, dict):
        raise bad_request("The body must be a JSON object with a query.")
    query, variables, name = body.get("query"), body.get("variables"), body.get("operationName")
    if not isinstance(query, str) or not query.strip():
        raise bad_request("query must be a GraphQL document (a non-empty string).")
    if variables is not None and not isinstance(variables, dict):
        raise bad_request("variables must be a JSON object.")
    if name is not None and not isinstance(name, str):
        raise bad_request("operationName must be a string.")
    return query, variables, name


def _only_error(code: str, message: str, analysis: dict[str, Any]) -> HttpResponse:
    body = {
        "errors": [{"message": message, "extensions": {"code": code}}],
        "extensions": {"queryAnalysis": analysis},
    }
    return HttpResponse(json_text(body), content_type="application/json")


@api_endpoint(scopes={"POST": None}, target="graphql")
def graphql_endpoint(request: HttpRequest, tenant: Tenant, principal: Principal) -> HttpResponse:
    started = time.monotonic()
    limit = limits.current_limits()
    query, variables, operation_name = _request(request, limit.request_bytes)
    # Written before the read-only transaction below, which always rolls back.
    catalogue.ensure(tenant)
    context = GraphContext(
        tenant=tenant,
        principal=principal,
        limits=limit,
        deadline=started + limit.timeout_ms / 1000,
    )
    limits.reset_depth()
    with transaction.atomic():
        with connection.cursor() as cursor:
            # A statement still running at the deadline is cancelled by PostgreSQL.
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, true)", [str(limit.timeout_ms)]
            )
        result = built(settings.SANDBOX_GRAPHQL_ME_ENABLED).execute_sync(
            query,
            variable_values=variables,
            context_value=context,
            operation_name=operation_name,
        )
        transaction.set_rollback(True)
    elapsed_ms = round((time.monotonic() - started) * 1000)
    analysis = {
        "depth": limits.measured_depth(),
        "complexity": context.analysis.get("complexity", 0),
        "time": elapsed_ms,
    }
    if elapsed_ms > limit.timeout_ms:
        return _only_error(
            limits.TIMEOUT, f"The query took longer than {limit.timeout_ms} ms.", analysis
        )
    errors = [_formatted(error, analysis["depth"], limit.depth) for error in result.errors or []]
    body: dict[str, Any] = {}
    if result.data is not None:
        body["data"] = result.data
    if errors:
        body["errors"] = errors
    body["extensions"] = {"queryAnalysis": analysis}
    text = json_text(body)
    if len(text.encode()) > limit.response_bytes:
        return _only_error(
            limits.RESPONSE_TOO_LARGE,
            f"The answer would be larger than {limit.response_bytes} bytes: ask for fewer "
            "items per page or fewer fields.",
            analysis,
        )
    return HttpResponse(text, content_type="application/json")


def _formatted(error: GraphQLError, depth: int, max_depth: int) -> dict[str, Any]:
    formatted: dict[str, Any] = dict(error.formatted)
    if "code" not in (formatted.get("extensions") or {}):
        # strawberry's depth limiter reports without a code; the measured depth tells it apart.
        code = "DEPTH_LIMIT_EXCEEDED" if depth > max_depth else "GRAPHQL_VALIDATION_FAILED"
        if error.path is not None:
            code = "INTERNAL_SERVER_ERROR" if _unexpected(error) else "BAD_USER_INPUT"
        formatted["extensions"] = {**(formatted.get("extensions") or {}), "code": code}
    return formatted
