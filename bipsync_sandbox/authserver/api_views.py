"""OAuth endpoints on a tenant's API host: metadata, token, device authorization, revocation.

Each endpoint consults the fault table first (off unless a test switched a fault on), counts the
request by client, grant type and outcome, and runs the grant in one transaction so that a
rotation is all-or-nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from urllib.parse import unquote

from authlib.oauth2.rfc6749.errors import InsecureTransportError, InvalidClientError
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from bipsync_sandbox.authserver.server import (
    HINTS,
    BadBody,
    SandboxAuthorizationServer,
    SandboxRequest,
    parse_body,
)
from bipsync_sandbox.control import runtime
from bipsync_sandbox.control.models import FaultKind, FaultTarget
from bipsync_sandbox.middleware import get_tenant

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def oauth_error(error: str, description: str, status: int = 400) -> JsonResponse:
    response = JsonResponse(
        {"error": error, "error_description": description, "hint": HINTS.get(error, "")},
        status=status,
    )
    for key, value in NO_STORE.items():
        response[key] = value
    return response


def _basic_credentials(request: HttpRequest) -> str | None:
    """The decoded ``id:secret`` of an HTTP Basic header, "" without one, None when unreadable
    (not base64, or not UTF-8: RFC 6749 §2.3.1 form-encodes both parts as UTF-8)."""
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        return base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def _basic_client_id(request: HttpRequest) -> str:
    return unquote((_basic_credentials(request) or "").partition(":")[0])


def _run_with_faults(
    request: HttpRequest,
    *,
    target: str,
    grant_type: str,
    client_id: str,
    handler: Callable[[], HttpResponse],
) -> HttpResponse:
    tenant = get_tenant(request)
    faults = runtime.find_faults(
        target,
        tenant_slug=tenant.slug,
        client_id=client_id,
        grant_type=grant_type,
        path=request.path,
    )
    fault = faults.terminal
    if fault is not None and fault.kind in (FaultKind.STATUS, FaultKind.RATE_LIMIT):
        response = runtime.status_fault_response(fault)
        runtime.count(client_id, target, grant_type, f"fault_{response.status_code}")
        return response
    if fault is not None and fault.kind == FaultKind.CLOSE:
        runtime.count(client_id, target, grant_type, "fault_close")
        return runtime.close_connection(request)
    runtime.sleep_ms(faults.delay_before_ms)
    response = handler()
    runtime.sleep_ms(faults.delay_after_ms)
    if fault is not None and fault.kind == FaultKind.LOSE_RESPONSE:
        # The grant above is committed (a refresh rotated the pair); the client never learns it.
        return runtime.close_connection(request)
    if fault is not None and fault.kind == FaultKind.ALTER_RESPONSE and response.status_code == 200:
        return _altered(response, fault.alter)
    return response


def _altered(response: HttpResponse, alter: str) -> HttpResponse:
    """The committed answer with the fault's members set (null: removed), headers kept."""
    document = json.loads(response.content)
    for name, value in json.loads(alter or "{}").items():
        if value is None:
            document.pop(name, None)
        else:
            document[name] = value
    response.content = json.dumps(document).encode()
    return response


def _oauth_call(
    request: HttpRequest,
    call: Callable[[SandboxAuthorizationServer, SandboxRequest], HttpResponse],
    *,
    target: str,
    client_id: str,
    grant_type: str,
) -> HttpResponse:
    tenant = get_tenant(request)
    server = SandboxAuthorizationServer(tenant)
    try:
        data, datalist = parse_body(request)
        oauth_request = SandboxRequest(request, data, datalist)
    except BadBody as exc:
        runtime.count(client_id, target, grant_type, "invalid_request")
        return oauth_error("invalid_request", str(exc))
    except InsecureTransportError:
        return oauth_error("insecure_transport", "OAuth requires https here.")
    if _basic_credentials(request) is None:
        # authlib's own decoding would raise on these; RFC 6749 §5.2 says invalid_client.
        runtime.count(client_id, target, grant_type, "invalid_client")
        unreadable = InvalidClientError(description="The Basic credentials are not readable.")
        return server.handle_error_response(oauth_request, unreadable)
    with transaction.atomic():
        response = call(server, oauth_request)
        outcome = "ok" if response.status_code < 400 else (server.last_error or "error")
        # Counted in the grant's own transaction: one commit per request.
        runtime.count(client_id, target, grant_type, outcome)
    return response


def _peek(request: HttpRequest) -> tuple[str, str]:
    """client_id and grant_type before any validation, for fault filters and counters."""
    try:
        data, _ = parse_body(request)
    except BadBody:
        data = {}
    client_id = data.get("client_id") or _basic_client_id(request)
    return client_id[:100], data.get("grant_type", "")[:64]


def _post_only(request: HttpRequest) -> HttpResponse | None:
    if request.method != "POST":
        response = oauth_error("invalid_request", "Use POST.", status=405)
        response["Allow"] = "POST"
        return response
    return None


@csrf_exempt
def token_endpoint(request: HttpRequest) -> HttpResponse:
    """POST {api}/v1/oauth/token: every grant [doc]."""
    if (refused := _post_only(request)) is not None:
        return refused
    client_id, grant_type = _peek(request)
    return _run_with_faults(
        request,
        target=FaultTarget.TOKEN,
        grant_type=grant_type,
        client_id=client_id,
        handler=lambda: _oauth_call(
            request,
            lambda server, oauth: server.create_token_response(oauth),
            target=FaultTarget.TOKEN,
            client_id=client_id,
            grant_type=grant_type,
        ),
    )


def _endpoint(request: HttpRequest, name: str, target: FaultTarget) -> HttpResponse:
    """An authlib endpoint (not a grant) behind the POST check and the fault switches."""
    if (refused := _post_only(request)) is not None:
        return refused
    client_id, _ = _peek(request)
    return _run_with_faults(
        request,
        target=target,
        grant_type="",
        client_id=client_id,
        handler=lambda: _oauth_call(
            request,
            lambda server, oauth: server.create_endpoint_response(name, oauth),
            target=target,
            client_id=client_id,
            grant_type="",
        ),
    )


@csrf_exempt
def device_authorization_endpoint(request: HttpRequest) -> HttpResponse:
    """POST {api}/v1/oauth/device (RFC 8628 §3.1) [doc]."""
    return _endpoint(request, "device_authorization", FaultTarget.DEVICE_AUTHORIZATION)


@csrf_exempt
def revocation_endpoint(request: HttpRequest) -> HttpResponse:
    """POST {api}/v1/oauth/revoke (RFC 7009) [choice]."""
    return _endpoint(request, "revocation", FaultTarget.REVOCATION)


def metadata_endpoint(request: HttpRequest) -> HttpResponse:
    """GET {api}/.well-known/oauth-authorization-server (RFC 8414) [doc]."""
    if request.method not in ("GET", "HEAD"):
        response = oauth_error("invalid_request", "Use GET.", status=405)
        response["Allow"] = "GET, HEAD"
        return response

    def handler() -> HttpResponse:
        server = SandboxAuthorizationServer(get_tenant(request))
        response = HttpResponse(
            json.dumps(server.metadata()), content_type="application/json", status=200
        )
        response["Cache-Control"] = "max-age=300"
        return response

    return _run_with_faults(
        request, target=FaultTarget.METADATA, grant_type="", client_id="", handler=handler
    )
