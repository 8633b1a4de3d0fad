"""Query limits and the query analysis every answer carries (``extensions.queryAnalysis``).

- depth: strawberry's :class:`~strawberry.extensions.QueryDepthLimiter`, reported through its
  callback;
- complexity: every field costs 1 and a connection (a field taking ``first``) multiplies the cost
  of its selection by its page size. Strawberry has no complexity analysis, so this is a
  graphql-core validation rule, built per request because a page size may be a variable and
  validation rules do not see variables;
- time and size are enforced by the view (:mod:`.view`).

All run before execution: a query over a limit answers only ``errors``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    VariableNode,
    get_named_type,
)
from strawberry.extensions import QueryDepthLimiter, SchemaExtension

DEPTH_LIMIT_EXCEEDED = "DEPTH_LIMIT_EXCEEDED"
COMPLEXITY_LIMIT_EXCEEDED = "COMPLEXITY_LIMIT_EXCEEDED"
TIMEOUT = "TIMEOUT"
RESPONSE_TOO_LARGE = "RESPONSE_TOO_LARGE"

#: The depths the depth limiter measured for the request being validated.
_depths: contextvars.ContextVar[dict[str, int]] = contextvars.ContextVar("graphql_depths")

_SETTINGS_SQL = (
    "SELECT graphql_max_complexity, graphql_timeout_ms, graphql_max_response_bytes "
    "FROM sandbox_api_apisettings WHERE id = 1"
)


@dataclass(frozen=True)
class Limits:
    depth: int
    complexity: int
    timeout_ms: int
    request_bytes: int
    response_bytes: int


def current_limits() -> Limits:
    """The settings, with the admin API's run-time overrides where set."""
    with connection.cursor() as cursor:
        cursor.execute(_SETTINGS_SQL)
        row = cursor.fetchone() or (None, None, None)
    complexity, timeout_ms, response_bytes = row
    return Limits(
        depth=settings.SANDBOX_GRAPHQL_MAX_DEPTH,
        complexity=complexity or settings.SANDBOX_GRAPHQL_MAX_COMPLEXITY,
        timeout_ms=timeout_ms or settings.SANDBOX_GRAPHQL_TIMEOUT_MS,
        request_bytes=settings.SANDBOX_GRAPHQL_MAX_REQUEST_BYTES,
        response_bytes=response_bytes or settings.SANDBOX_GRAPHQL_MAX_RESPONSE_BYTES,
    )


def depth_limiter(max_depth: int) -> QueryDepthLimiter:
    def remember(depths: dict[str, int]) -> None:
        _depths.set(depths)

    return QueryDepthLimiter(max_depth=max_depth, callback=remember)


def measured_depth() -> int:
    return max(_depths.get({}).values(), default=0)


def reset_depth() -> None:
    _depths.set({})


class _Cost:
    """The complexity of one operation (see the module docstring)."""

    def __init__(
        self,
        context: ValidationContext,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
    ) -> None:
        self.schema = context.schema
        self.fragments = fragments
        self.variables = variables

    def page(self, node: FieldNode) -> int:
        size: int | None = None
        for argument in node.arguments or ():
            if argument.name.value not in {"first", "last"}:
                continue
            value = argument.value
            if isinstance(value, IntValueNode):
                size = int(value.value)
            elif isinstance(value, VariableNode):
                raw = self.variables.get(value.name.value)
                size = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
        if size is None:
            size = settings.SANDBOX_GRAPHQL_PAGE_SIZE_MAX
        return max(0, size)

    def of(
        self,
        selections: SelectionSetNode | None,
        parent: GraphQLNamedType | None,
        seen: frozenset[str] = frozenset(),
    ) -> int:
        if selections is None or parent is None:
            return 0
        total = 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                total += self.field(selection, parent, seen)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.schema.get_type(condition.name.value) if condition else parent
                total += self.of(selection.selection_set, target, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in seen:
                    continue  # reported by the standard rules
                target = self.schema.get_type(fragment.type_condition.name.value)
                total += self.of(fragment.selection_set, target, seen | {name})
        return total

    def field(self, node: FieldNode, parent: GraphQLNamedType, seen: frozenset[str]) -> int:
        if node.name.value.startswith("__"):
            return 0  # introspection
        if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return 1
        definition = parent.fields.get(node.name.value)
        if definition is None:
            return 1
        inner = self.of(node.selection_set, get_named_type(definition.type), seen)
        if "first" in definition.args:
            return 1 + self.page(node) * inner
        return 1 + inner


def complexity_rule(
    variables: Mapping[str, Any], limit: int, analysis: dict[str, int]
) -> type[ValidationRule]:
    class ComplexityLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            definitions = context.document.definitions
            fragments = {
                d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)
            }
            cost = _Cost(context, fragments, variables)
            root = context.schema.query_type
            worst = 0
            for definition in definitions:
                if isinstance(definition, OperationDefinitionNode):
                    worst = max(worst, cost.of(definition.selection_set, root))
            analysis["complexity"] = worst
            if worst > limit:
                context.report_error(
                    GraphQLError(
                        f"The query's complexity is {worst}, over the limit of {limit}: ask for "
                        "smaller pages (first) or fewer fields.",
                        extensions={"code": COMPLEXITY_LIMIT_EXCEEDED},
                    )
                )

    return ComplexityLimit


class Analysis(SchemaExtension):
    """Adds the complexity rule of this request (its variables, its limit)."""

    def on_operation(self) -> Iterator[None]:
        execution = self.execution_context
        context = execution.context
        rule = complexity_rule(
            execution.variables or {}, context.limits.complexity, context.analysis
        )
        execution.validation_rules = (*execution.validation_rules, rule)
        yield
