"""Every error of the API as an RFC 9457 problem (``application/problem+json``): ``type``,
``title``, ``status``, ``detail`` and ``instance`` (the request's path), and for bad input
``errors``, one per field.

``type`` is ``about:blank`` for errors that say no more than their HTTP status (RFC 9457 §4.2.1)
and a tag URI (RFC 4151; RFC 9457 §3.1.1 allows types that do not resolve) for the API's own
kinds of problem.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from django.http import HttpRequest, HttpResponse

CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "tag:bipsync-partner,2026:problem:"

#: Where a parameter came from, as ninja names it first in an error's location.
_SOURCES = {"body", "query", "path", "header", "cookie", "form", "file"}


class Problem(Exception):
    """Raise in a view to answer with a problem."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str = "",
        title: str = "",
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.title = title or HTTPStatus(status).phrase
        self.errors = errors
        self.headers = headers or {}


def response(request: HttpRequest, problem: Problem) -> HttpResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + problem.kind if problem.kind else "about:blank",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.path,
    }
    if problem.errors is not None:
        body["errors"] = problem.errors
    answer = HttpResponse(json.dumps(body), status=problem.status, content_type=CONTENT_TYPE)
    for name, value in problem.headers.items():
        answer[name] = value
    return answer


def field_errors(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    """ninja's (pydantic's) validation errors as ``{"in", "field", "message"}``: the field
    dotted, without the name of the view's body parameter."""
    found = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        where = loc.pop(0) if loc and loc[0] in _SOURCES else "body"
        if where == "body" and len(loc) > 1:
            loc = loc[1:]  # the body parameter's own name
        found.append(
            {
                "in": where,
                "field": ".".join(loc) or where,
                "message": str(error.get("msg", "is not valid")),
            }
        )
    return found


def validation(errors: list[dict[str, Any]]) -> Problem:
    fields = field_errors(errors)
    detail = "; ".join(f"{e['field']} ({e['in']}): {e['message']}" for e in fields)
    return Problem(
        400,
        f"The request is not valid: {detail}.",
        kind="validation",
        title="Invalid request",
        errors=fields,
    )


def bad_parameter(name: str, where: str, message: str) -> Problem:
    """A 400 naming one parameter, for checks made in a view."""
    return Problem(
        400,
        f"The request is not valid: {name} ({where}): {message}",
        kind="validation",
        title="Invalid request",
        errors=[{"in": where, "field": name, "message": message}],
    )


def from_response(request: HttpRequest, answer: HttpResponse) -> HttpResponse:
    """A plain error answer (ninja's 405, Django's 404 of an unknown path) as a problem."""
    if answer.status_code < 400 or answer.get("Content-Type", "").startswith(CONTENT_TYPE):
        return answer
    detail = {
        404: "There is nothing at this address in the API.",
        405: f"{request.method} is not allowed here; allowed: {answer.get('Allow', '')}.",
    }.get(answer.status_code, HTTPStatus(answer.status_code).phrase + ".")
    problem = Problem(answer.status_code, detail)
    if "Allow" in answer:
        problem.headers["Allow"] = answer["Allow"]
    return response(request, problem)
