"""Bipsync's GraphQL API (docs/bipsync.md, "GraphQL"), on top of :class:`BipsyncApi`.

A GraphQL request is a POST that only reads, so it goes through :meth:`BipsyncApi.send` as an
idempotent call: the same token service, 401 refresh, 403, 429 (``Retry-After`` and the tenant's
gate) and 5xx backoff as the REST calls. What GraphQL adds is that a 200 may still be a failure:
any ``errors`` entry raises :class:`GraphqlError`, and the limit codes raise
:class:`QueryLimitExceeded` so that a caller can ask for smaller pages instead of retrying.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from bipsync_partner.sync.api import ApiError, BipsyncApi

#: extensions.code of a limit -> :attr:`QueryLimitExceeded.code`.
LIMIT_CODES = {
    "DEPTH_LIMIT_EXCEEDED": "depth",
    "COMPLEXITY_LIMIT_EXCEEDED": "complexity",
    "TIMEOUT": "timeout",
    "RESPONSE_TOO_LARGE": "size",
}


class GraphqlError(ApiError):
    """The answer carried ``errors``. ``codes`` are their ``extensions.code`` values, ``code`` the
    first of them; ``data`` is what the answer held beside the errors (a partial result)."""

    default_code = "graphql_error"

    def __init__(
        self,
        sentence: str,
        *,
        errors: Sequence[Mapping[str, Any]] = (),
        data: dict[str, Any] | None = None,
        code: str | None = None,
        status: int | None = None,
        transient: bool | None = None,
    ) -> None:
        self.errors = [dict(error) for error in errors]
        self.messages = [str(error.get("message", "")) for error in self.errors]
        self.codes = [_code_of(error) for error in self.errors]
        self.data = data
        first = next((c for c in self.codes if c), None)
        super().__init__(sentence, code=code or first, status=status, transient=transient)


class QueryLimitExceeded(GraphqlError):
    """The query was over one of Bipsync's limits; ``code`` says which: "depth", "complexity",
    "timeout" or "size" (the request or the answer)."""

    default_code = "size"


@dataclass(frozen=True)
class GraphqlPage:
    """One page of a connection: its nodes, where the next starts, and the query analysis."""

    nodes: list[dict[str, Any]] = field(repr=False)
    total_count: int | None
    end_cursor: str | None
    has_next_page: bool
    analysis: dict[str, Any]


def _code_of(error: Mapping[str, Any]) -> str:
    extensions = error.get("extensions")
    if isinstance(extensions, Mapping):
        code = extensions.get("code")
        if isinstance(code, str):
            return code
    return ""


def _sentence(errors: Sequence[Mapping[str, Any]]) -> str:
    messages = [str(error.get("message", "")).strip() for error in errors]
    shown = "; ".join(message[:300] for message in messages[:3] if message)
    more = f" (and {len(messages) - 3} more)" if len(messages) > 3 else ""
    return f"Bipsync's GraphQL API answered with errors: {shown or 'no message'}{more}"


class GraphqlClient:
    """GraphQL queries on one connection's tenant."""

    def __init__(
        self, api: BipsyncApi, *, path: str | None = None, page_size: int | None = None
    ) -> None:
        self.api = api
        self.path = path or settings.BIPSYNC_GRAPHQL_PATH
        self.page_size = page_size or settings.BIPSYNC_GRAPHQL_PAGE_SIZE

    def request(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        operation_name: str | None = None,
    ) -> dict[str, Any]:
        """The whole answer (``data``, ``extensions``) of a query that had no errors."""
        payload: dict[str, Any] = {"query": query}
        if variables:
            payload["variables"] = dict(variables)
        if operation_name:
            payload["operationName"] = operation_name
        try:
            body = self.api.send("POST", self.path, json_body=payload, idempotent=True)
        except ApiError as exc:
            if exc.status == 413:
                raise QueryLimitExceeded(exc.sentence, code="size", status=413) from None
            raise
        if not isinstance(body, dict):
            raise GraphqlError(
                "Bipsync's GraphQL API answered with something other than a JSON object.",
                code="invalid_response",
                transient=True,
            )
        errors = body.get("errors")
        if errors:
            entries = (
                [e for e in errors if isinstance(e, Mapping)] if isinstance(errors, list) else []
            )
            data = body.get("data") if isinstance(body.get("data"), dict) else None
            limit = next((LIMIT_CODES[c] for c in map(_code_of, entries) if c in LIMIT_CODES), None)
            if limit is not None:
                raise QueryLimitExceeded(
                    _sentence(entries),
                    errors=entries,
                    data=data,
                    code=limit,
                    transient=limit == "timeout",
                )
            raise GraphqlError(
                _sentence(entries) if entries else "Bipsync's GraphQL API answered with errors.",
                errors=entries,
                data=data,
            )
        if not isinstance(body.get("data"), dict):
            raise GraphqlError("Bipsync's GraphQL answer has no data.", code="invalid_response")
        return body

    def execute(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        operation_name: str | None = None,
    ) -> dict[str, Any]:
        """The ``data`` of a query; any error raises :class:`GraphqlError`."""
        data: dict[str, Any] = self.request(query, variables, operation_name)["data"]
        return data

    def pages(
        self,
        query: str,
        connection_path: Sequence[str],
        variables: Mapping[str, Any] | None = None,
        page_size: int | None = None,
    ) -> Iterator[GraphqlPage]:
        """Every page of the connection at ``connection_path`` in the answer (e.g.
        ``["research"]``), following ``pageInfo.endCursor`` while ``hasNextPage``. The query
        must take ``$first: Int`` and ``$after: String`` and pass them to that connection."""
        after: str | None = None
        size = page_size or self.page_size
        while True:
            body = self.request(query, {**(variables or {}), "first": size, "after": after})
            page = _page(body, connection_path)
            yield page
            if not page.has_next_page or page.end_cursor is None or page.end_cursor == after:
                return
            after = page.end_cursor

    def nodes(
        self,
        query: str,
        connection_path: Sequence[str],
        variables: Mapping[str, Any] | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every node of the connection, page after page (see :meth:`pages`)."""
        for page in self.pages(query, connection_path, variables, page_size):
            yield from page.nodes


def _page(body: dict[str, Any], connection_path: Sequence[str]) -> GraphqlPage:
    found: Any = body["data"]
    for key in connection_path:
        found = found.get(key) if isinstance(found, dict) else None
    where = ".".join(connection_path)
    if not isinstance(found, dict) or not isinstance(found.get("edges"), list):
        raise GraphqlError(
            f"Bipsync's GraphQL answer has no connection at {where}.", code="invalid_response"
        )
    info = found.get("pageInfo")
    if not isinstance(info, dict):
        raise GraphqlError(
            f"The connection at {where} needs pageInfo {{ hasNextPage endCursor }} in the query.",
            code="invalid_query",
        )
    nodes = [
        edge["node"]
        for edge in found["edges"]
        if isinstance(edge, dict) and isinstance(edge.get("node"), dict)
    ]
    total = found.get("totalCount")
    cursor = info.get("endCursor")
    extensions = body.get("extensions")
    analysis = extensions.get("queryAnalysis") if isinstance(extensions, dict) else None
    return GraphqlPage(
        nodes=nodes,
        total_count=total if isinstance(total, int) else None,
        end_cursor=cursor if isinstance(cursor, str) else None,
        has_next_page=info.get("hasNextPage") is True,
        analysis=analysis if isinstance(analysis, dict) else {},
    )
