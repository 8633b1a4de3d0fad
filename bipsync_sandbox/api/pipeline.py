"""What every REST call goes through before and after its view.

Order: 406 (Accept), 405 (method), 403 (tenant IP allow-list), 401 (bearer token), injected faults
(target "api"), 429 (per-token rate limit), 401 (scope), then the view, whose listing an
``empty_page`` or ``short_page`` fault then rewrites, and whose committed answer a
``lose_response`` fault drops or a ``status_after`` fault replaces with an error status. Bad input anywhere becomes a
JSON 400 (:class:`ApiError`), never a 500.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from bipsync_sandbox.api import ratelimit
from bipsync_sandbox.api.auth import authenticate, require_scope
from bipsync_sandbox.api.errors import ApiError, error_response
from bipsync_sandbox.control import runtime
from bipsync_sandbox.control.models import LISTING_FAULTS, FaultKind
from bipsync_sandbox.identity.models import Tenant
from bipsync_sandbox.middleware import API_PREFIX, get_tenant

ApiView: TypeAlias = Callable[..., HttpResponse]

_JSON_RANGES = {"*/*", "application/*", "application/json"}


def _accepts_json(request: HttpRequest) -> bool:
    header = request.META.get("HTTP_ACCEPT", "")
    if not header.strip():
        return True
    for item in header.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if media.lower() not in _JSON_RANGES:
            continue
        if any(p.replace(" ", "").lower() in {"q=0", "q=0.0", "q=0.00", "q=0.000"} for p in params):
            continue
        return True
    return False


def client_ip(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR", ""))


@dataclass
class Call:
    """What the pipeline learns about one call, for the fault switches and the counters."""

    faults: runtime.ActiveFaults = field(default_factory=runtime.ActiveFaults)
    client_id: str = ""
    outcome: str = "ok"


def api_endpoint(
    *, scopes: dict[str, str | None], target: str = "api"
) -> Callable[[ApiView], Callable[..., HttpResponse]]:
    """Wrap an API view; ``scopes`` maps each allowed method to the scope it needs (None: the
    view checks scopes itself, as GraphQL does per field). ``target`` names the view's faults."""

    def decorate(view: ApiView) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            tenant = get_tenant(request)
            call = Call()
            try:
                response = _run(request, tenant, view, scopes, target, call, kwargs)
            except ApiError as exc:
                response = error_response(exc)
                call.outcome = exc.error
            faults = call.faults
            runtime.sleep_ms(faults.delay_after_ms)
            lose = faults.terminal is not None and faults.terminal.kind == FaultKind.LOSE_RESPONSE
            if lose:
                call.outcome = "fault_lose_response"
            if faults.terminal is not None and faults.terminal.kind == FaultKind.STATUS_AFTER:
                # The view ran and its work is committed; the client only sees an error.
                response = runtime.status_fault_response(faults.terminal)
                call.outcome = f"fault_after_{response.status_code}"
            # Counted like the OAuth endpoints (admin API /_sandbox/counters): endpoint "api",
            # the route in the grant-type column, so that tests can assert how a client paged.
            path = request.path_info.removeprefix(API_PREFIX)
            runtime.count(call.client_id, "api", f"{request.method} {path}", call.outcome)
            if lose:
                # The request was processed and committed above; the client never learns it.
                return runtime.close_connection(request)
            return response

        return wrapper

    return decorate


def _run(
    request: HttpRequest,
    tenant: Tenant,
    view: ApiView,
    scopes: dict[str, str | None],
    target: str,
    call: Call,
    kwargs: dict[str, Any],
) -> HttpResponse:
    if not _accepts_json(request):
        raise ApiError(406, "not_acceptable", "This API answers with application/json only.")
    method = request.method or "GET"
    if method not in scopes:
        raise ApiError(
            405,
            "method_not_allowed",
            f"{method} is not allowed here.",
            headers={"Allow": ", ".join(sorted(scopes))},
        )
    address = client_ip(request)
    if not tenant.allows_ip(address):
        # Bipsync's 403 means exactly this [doc], never a permission problem.
        raise ApiError(
            403,
            "ip_not_allowed",
            f"The IP address {address} is not allow-listed for this Bipsync site.",
        )
    principal = authenticate(request, tenant)
    call.client_id = principal.client_id
    # Fault path filters match the path the client sent (as for the OAuth endpoints), e.g.
    # /t/acme/api/v1/research with the local path-based hosts.
    call.faults = runtime.find_faults(
        target,
        tenant_slug=tenant.slug,
        client_id=principal.client_id,
        path=request.path,
        method=method,
    )
    runtime.sleep_ms(call.faults.delay_before_ms)
    terminal = call.faults.terminal
    if terminal is not None:
        if terminal.kind in {FaultKind.STATUS, FaultKind.RATE_LIMIT}:
            response = runtime.status_fault_response(terminal)
            call.outcome = f"fault_{response.status_code}"
            return response
        if terminal.kind == FaultKind.CLOSE:
            call.outcome = "fault_close"
            return runtime.close_connection(request)
    ratelimit.hit(principal.token_id, ratelimit.current_limit())
    scope = scopes[method]
    if scope is not None:
        require_scope(principal, tenant, scope)
    response = view(request, tenant, principal, **kwargs)
    if terminal is not None and terminal.kind in LISTING_FAULTS:
        changed = runtime.listing_fault_response(terminal, response)
        if changed is not None:
            call.outcome = f"fault_{terminal.kind}"
            return changed
    return response
