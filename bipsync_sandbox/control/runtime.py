"""Reading the run-time switches: lifetimes, faults, counters.

Each is one small query so that the token endpoint stays cheap: the fault table is empty unless a
test switched a fault on, and counters are a single upsert.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.http import HttpRequest, HttpResponse, JsonResponse

from bipsync_sandbox.authserver import fastdb
from bipsync_sandbox.control.models import (
    EndpointCounter,
    Fault,
    FaultKind,
)

if TYPE_CHECKING:
    from bipsync_sandbox.authserver.models import Application


@dataclass(frozen=True)
class Lifetimes:
    access: int
    refresh: int
    code: int
    device: int
    device_interval: int


def _pick(*values: int | None) -> int:
    for value in values:
        if value is not None:
            return value
    raise ValueError("no value")


def lifetimes(application: Application | None = None) -> Lifetimes:
    """Application override, else the run-time override, else the settings default."""
    runtime = fastdb.runtime_lifetimes() or (None, None, None, None, None)
    app = application
    return Lifetimes(
        access=_pick(
            app.access_token_lifetime if app else None,
            runtime[0],
            settings.SANDBOX_ACCESS_TOKEN_LIFETIME,
        ),
        refresh=_pick(
            app.refresh_token_lifetime if app else None,
            runtime[1],
            settings.SANDBOX_REFRESH_TOKEN_LIFETIME,
        ),
        code=_pick(
            app.code_lifetime if app else None,
            runtime[2],
            settings.SANDBOX_AUTHORIZATION_CODE_LIFETIME,
        ),
        device=_pick(
            app.device_code_lifetime if app else None,
            runtime[3],
            settings.SANDBOX_DEVICE_CODE_LIFETIME,
        ),
        device_interval=_pick(
            app.device_poll_interval if app else None,
            runtime[4],
            settings.SANDBOX_DEVICE_POLL_INTERVAL,
        ),
    )


# --- faults ---------------------------------------------------------------------------------


@dataclass
class ActiveFaults:
    """The faults that apply to one request: delays, and at most one terminal fault."""

    delay_before_ms: int = 0
    delay_after_ms: int = 0
    terminal: Fault | None = None

    def __bool__(self) -> bool:
        return bool(self.delay_before_ms or self.delay_after_ms or self.terminal)


def _claim(fault: Fault) -> bool:
    """Count one use of a fault limited to N requests; False when another request took the last."""
    if fault.remaining is None:
        return True
    updated = Fault.objects.filter(pk=fault.pk, remaining__gt=0).update(
        remaining=F("remaining") - 1
    )
    return updated == 1


def find_faults(
    target: str,
    *,
    tenant_slug: str = "",
    client_id: str = "",
    grant_type: str = "",
    path: str = "",
    method: str = "",
) -> ActiveFaults:
    active = ActiveFaults()
    for fault in fastdb.live_faults(target):
        if (
            (fault.method and fault.method != method)
            or (fault.probability < 1.0 and random.random() >= fault.probability)
            or (fault.tenant_slug and fault.tenant_slug != tenant_slug)
            or (fault.client_id and fault.client_id != client_id)
            or (fault.grant_type and fault.grant_type != grant_type)
            or (fault.path_prefix and not path.startswith(fault.path_prefix))
        ):
            continue
        if fault.kind == FaultKind.SLOW:
            if _claim(fault):
                if fault.when == "after":
                    active.delay_after_ms += fault.delay_ms
                else:
                    active.delay_before_ms += fault.delay_ms
        elif active.terminal is None and _claim(fault):
            active.terminal = fault
    return active


def sleep_ms(milliseconds: int) -> None:
    if milliseconds > 0:
        time.sleep(milliseconds / 1000)


def close_connection(request: HttpRequest) -> HttpResponse:
    """Shut the client's TCP connection so that it receives no HTTP response at all.

    Under gunicorn the WSGI environ carries the socket. After ``shutdown`` gunicorn's write of
    the response fails with EPIPE, which it ignores. Without gunicorn (the development server) the
    best available approximation is an empty 502 answer.
    """
    sock: Any = request.META.get("gunicorn.socket")
    if sock is None:
        return HttpResponse(status=502)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    response = HttpResponse(status=502)
    response["Connection"] = "close"
    return response


def status_fault_response(fault: Fault) -> HttpResponse:
    status = fault.status_code or 503
    if fault.kind == FaultKind.RATE_LIMIT:
        status = 429
    body = {
        "error": "temporarily_unavailable" if status == 503 else "server_error",
        "error_description": "The sandbox injected this fault.",
        "hint": "A fault is switched on in the sandbox (admin API /_sandbox/faults).",
    }
    response = JsonResponse(body, status=status)
    if status == 429:
        response["Retry-After"] = str(max(1, -(-fault.delay_ms // 1000)))
    response["Cache-Control"] = "no-store"
    return response


def listing_fault_response(fault: Fault, response: HttpResponse) -> HttpResponse | None:
    """The listing ``response`` as the fault changes it, or None when it is not a listing.

    ``empty_page``: no results and a total of 0. ``short_page``: the first ``keep`` results
    only, the total untouched, so that the page contradicts the total it reports.
    ``end_early``: the first ``keep`` results, and a total that ends the list after them.
    """
    if response.status_code != 200:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        return None
    if fault.kind == FaultKind.EMPTY_PAGE:
        body["total"], body["results"] = 0, []
    else:
        body["results"] = body["results"][: fault.keep]
        if fault.kind == FaultKind.END_EARLY:
            body["total"] = int(body.get("offset") or 0) + len(body["results"])
    changed = JsonResponse(body)
    changed["Cache-Control"] = "no-store"
    return changed


# --- counters --------------------------------------------------------------------------------

_COUNTER_SQL = (
    "INSERT INTO sandbox_control_endpointcounter "
    "(client_id, endpoint, grant_type, outcome, count) VALUES (%s, %s, %s, %s, 1) "
    "ON CONFLICT (client_id, endpoint, grant_type, outcome) "
    "DO UPDATE SET count = sandbox_control_endpointcounter.count + 1"
)


def count(client_id: str, endpoint: str, grant_type: str, outcome: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_COUNTER_SQL, [client_id[:100], endpoint, grant_type[:64], outcome[:64]])


def counters(client_id: str | None = None) -> dict[str, Any]:
    """``{client_id: {endpoint: {grant_type or "-": {outcome: n}}}}``."""
    rows = EndpointCounter.objects.all()
    if client_id is not None:
        rows = rows.filter(client_id=client_id)
    result: dict[str, Any] = {}
    for row in rows.order_by("client_id", "endpoint", "grant_type", "outcome"):
        by_endpoint = result.setdefault(row.client_id, {}).setdefault(row.endpoint, {})
        by_endpoint.setdefault(row.grant_type or "-", {})[row.outcome] = row.count
    return result
