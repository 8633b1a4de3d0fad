"""Who a GraphQL request acts as, and the per-type scope checks [doc: GraphQL scopes].

A field whose type needs a scope the token lacks resolves to null with an error entry at its path
(extensions.code ``INSUFFICIENT_SCOPE``) [choice]: the rest of the query still answers, which is
how GraphQL reports a partial failure (GraphQL spec, "Handling Field Errors").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from graphql import GraphQLError
from strawberry.types import Info

from bipsync_sandbox.api.auth import Principal
from bipsync_sandbox.api.graph.limits import Limits
from bipsync_sandbox.identity.models import Tenant

INSUFFICIENT_SCOPE = "INSUFFICIENT_SCOPE"
TIMEOUT = "TIMEOUT"
BAD_USER_INPUT = "BAD_USER_INPUT"


@dataclass
class GraphContext:
    tenant: Tenant
    principal: Principal
    limits: Limits
    #: time.monotonic() after which resolvers stop with TIMEOUT.
    deadline: float
    #: The query analysis of this request, filled in by the limits (extensions.queryAnalysis).
    analysis: dict[str, int] = field(default_factory=dict)


def context_of(info: Info) -> GraphContext:
    context = info.context
    assert isinstance(context, GraphContext)
    return context


def require(info: Info, scope: str) -> GraphContext:
    """The request's context, once its token is known to carry ``scope``."""
    context = context_of(info)
    if scope not in context.principal.scopes:
        raise GraphQLError(
            f"This field needs the scope {scope}.", extensions={"code": INSUFFICIENT_SCOPE}
        )
    if time.monotonic() > context.deadline:
        raise GraphQLError("The query ran out of time.", extensions={"code": TIMEOUT})
    return context


def bad_input(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": BAD_USER_INPUT})
