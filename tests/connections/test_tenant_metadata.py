"""A tenant's metadata cannot send the partner's credentials elsewhere, the callback exchanges at
the token endpoint pinned when the flow started, each tenant's last good metadata carries it
through failed refetches, changed endpoints are told to the operators, and RFC 8414 §3.1's
location is asked first.

Through the real views and public functions, against the stub server standing for a tenant's host
(its metadata can be anything) and a second stub standing for another host, or the sandbox.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.connections import clients
from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.pending import PendingAuthorizationRecord
from bipsync_partner.connections.tenant_metadata import TenantMetadata, TenantMetadataEvent
from bipsync_partner.connections.tokens import TokenError, get_access_token
from bipsync_partner.oauth import ProtocolError
from bipsync_partner.ops import metrics
from tests.conftest import signed_in
from tests.connections.conftest import MakeConnection
from tests.connections.connect_support import (
    code_exchanges,
    configure_partner,
    connect,
    new_world,
    query,
    start,
)
from tests.oauth.conftest import metadata_document
from tests.support.sandbox import Sandbox
from tests.support.stub_http import StubHTTPServer, StubResponse

pytestmark = pytest.mark.django_db

TOKEN_RESPONSE = {
    "access_token": "stub-access-token",
    "token_type": "Bearer",
    "expires_in": 3600,
    "refresh_token": "stub-refresh-token",
    "scope": "rest_api:read rest_api:fields:read",
}


class StubTenant:
    """A tenant whose hosts are the stub server, and the partner settings pointing at it."""

    def __init__(self, stub: StubHTTPServer) -> None:
        self.stub = stub
        self.slug = "t" + uuid.uuid4().hex[:12]
        self.issuer = f"{stub.url}/t/{self.slug}/api"
        # RFC 8414 §3.1's location for the issuer: the one discovery asks first.
        self.well_known = f"/.well-known/oauth-authorization-server/t/{self.slug}/api"

    def path(self, suffix: str) -> str:
        return f"/t/{self.slug}/api{suffix}"

    def document(self, **overrides: Any) -> dict[str, Any]:
        return metadata_document(self.issuer, **overrides)

    def serve(self, *documents: dict[str, Any] | StubResponse) -> None:
        """Answer metadata requests with ``documents`` in order, repeating the last."""
        self.stub.route(
            "GET",
            self.well_known,
            *(d if isinstance(d, StubResponse) else StubResponse(body=d) for d in documents),
        )


@pytest.fixture
def stub_http() -> Iterator[StubHTTPServer]:
    server = StubHTTPServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def elsewhere() -> Iterator[StubHTTPServer]:
    """Another host (another port is another origin), recording whatever reaches it."""
    server = StubHTTPServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tenant(settings: Settings, stub_http: StubHTTPServer) -> StubTenant:
    settings.SITE_URL = "http://127.0.0.1:8000"
    settings.BIPSYNC_API_BASE_TEMPLATE = stub_http.url + "/t/{tenant}/api"
    settings.BIPSYNC_WEB_BASE_TEMPLATE = stub_http.url + "/t/{tenant}/web"
    settings.BIPSYNC_ALLOW_INSECURE_LOOPBACK = True
    settings.BIPSYNC_USER_CLIENT_ID = "partner-user-app"
    settings.BIPSYNC_USER_CLIENT_SECRET = "partner-user-secret"
    settings.BIPSYNC_SCOPES = "rest_api:read rest_api:fields:read"
    # Every lookup refetches (no cache, no process copy), as after the TTL.
    settings.BIPSYNC_METADATA_TTL = 0
    return StubTenant(stub_http)


def metric(event: str) -> float:
    value = metrics._redis().hget(metrics.PREFIX + "bipsync_metadata_events", event)
    return float(value or 0)


def events(issuer: str, kind: str) -> list[TenantMetadataEvent]:
    return list(TenantMetadataEvent.objects.filter(issuer=issuer, kind=kind))


def callback(client: Client, authorize_url: str, issuer: str, code: str = "the-code") -> Any:
    state = query(authorize_url)["state"]
    return client.get(
        "/connections/callback/?" + urlencode({"code": code, "state": state, "iss": issuer})
    )


# --- credentials go to the issuer's own host only ----------------------------------------------


def test_connect_refuses_a_tenant_whose_token_endpoint_is_on_another_host(
    tenant: StubTenant,
    elsewhere: StubHTTPServer,
    team: Team,
    bob: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tenant.serve(tenant.document(token_endpoint=elsewhere.url + "/token"))
    refused_before = metric("refused")

    with caplog.at_level(logging.ERROR, logger="bipsync_partner.security"):
        response = signed_in(bob).post(
            f"/teams/{team.slug}/connections/connect/", {"tenant": tenant.slug, "kind": "user"}
        )

    assert response.status_code == 502  # Bipsync's side is at fault, with a sentence
    assert "published details did not pass" in response.content.decode()
    assert not PendingAuthorizationRecord.objects.exists()
    assert elsewhere.requests == []
    assert len(events(tenant.issuer, "refused")) == 1
    assert metric("refused") == refused_before + 1
    assert any(
        r.name == "bipsync_partner.security" and tenant.issuer in r.getMessage()
        for r in caplog.records
    )

    operator = User.objects.create_superuser("ops@example.com", "ops password 123")
    page = signed_in(operator).get("/admin/connections/tenantmetadataevent/?kind=refused")
    assert page.status_code == 200
    assert tenant.issuer in page.content.decode()


def test_a_refresh_never_posts_the_refresh_token_to_a_token_endpoint_on_another_host(
    tenant: StubTenant, elsewhere: StubHTTPServer, make_connection: MakeConnection
) -> None:
    tenant.serve(tenant.document(token_endpoint=elsewhere.url + "/token"))
    conn = make_connection(tenant=tenant.slug, access_expires_at=timezone.now())

    with pytest.raises(TokenError):
        get_access_token(conn)

    assert elsewhere.requests == []
    conn.refresh_from_db()
    assert conn.status == Connection.Status.FAILING
    assert conn.last_error_code == "invalid_metadata"


def test_a_disconnect_never_posts_the_tokens_to_a_revocation_endpoint_on_another_host(
    tenant: StubTenant,
    elsewhere: StubHTTPServer,
    team: Team,
    alice: User,
    make_connection: MakeConnection,
) -> None:
    tenant.serve(tenant.document(revocation_endpoint=elsewhere.url + "/revoke"))
    conn = make_connection(tenant=tenant.slug)

    response = signed_in(alice).post(f"/teams/{team.slug}/connections/{conn.pk}/disconnect/")

    assert response.status_code == 302
    assert elsewhere.requests == []
    assert conn.events.filter(kind="revocation_failed").exists()


def test_the_device_login_never_posts_to_a_device_endpoint_on_another_host(
    tenant: StubTenant,
    elsewhere: StubHTTPServer,
    settings: Settings,
    team: Team,
    bob: User,
) -> None:
    settings.BIPSYNC_PUBLIC_CLIENT_ID = "partner-public-app"
    tenant.serve(tenant.document(device_authorization_endpoint=elsewhere.url + "/device"))

    with pytest.raises(CommandError, match="invalid_metadata"):
        call_command(
            "connect_device", "--email", bob.email, "--team", team.slug, "--tenant", tenant.slug
        )

    assert elsewhere.requests == []
    assert not Connection.objects.exists()


def test_an_authorization_endpoint_off_the_tenant_web_host_is_refused(
    tenant: StubTenant, elsewhere: StubHTTPServer, team: Team, bob: User
) -> None:
    tenant.serve(tenant.document(authorization_endpoint=elsewhere.url + "/oauth/authorize"))

    response = signed_in(bob).post(
        f"/teams/{team.slug}/connections/connect/", {"tenant": tenant.slug, "kind": "user"}
    )

    assert response.status_code != 302
    assert "published details did not pass" in response.content.decode()
    assert not PendingAuthorizationRecord.objects.exists()


# --- the callback uses the token endpoint pinned at the start ------------------------------------


def test_the_callback_exchanges_the_code_at_the_token_endpoint_pinned_when_the_flow_started(
    tenant: StubTenant, stub_http: StubHTTPServer, team: Team, bob: User
) -> None:
    moved = tenant.document(token_endpoint=tenant.issuer + "/v2/oauth/token")
    tenant.serve(tenant.document(), moved)
    stub_http.route("POST", tenant.path("/v1/oauth/token"), StubResponse(body=TOKEN_RESPONSE))
    stub_http.route("POST", tenant.path("/v2/oauth/token"), StubResponse(body=TOKEN_RESPONSE))
    client = signed_in(bob)

    authorize_url = start(client, team, tenant.slug)
    response = callback(client, authorize_url, tenant.issuer)

    assert response.status_code == 302, response.content.decode()[:500]
    assert len(stub_http.requests_to(tenant.path("/v1/oauth/token"))) == 1
    assert stub_http.requests_to(tenant.path("/v2/oauth/token")) == []
    assert Connection.objects.get(tenant=tenant.slug).status == Connection.Status.ACTIVE


# --- the last good copy ------------------------------------------------------------------------


def test_when_a_refetch_fails_connect_uses_the_last_good_metadata(
    sandbox: Sandbox, settings: Settings, team: Team, bob: User
) -> None:
    world = new_world(sandbox)
    configure_partner(settings, sandbox, world)
    settings.BIPSYNC_METADATA_TTL = 0  # every lookup refetches
    issuer = world.api_base
    client = signed_in(bob)
    assert connect(client, sandbox, team, world, as_user=world.member).status_code == 302
    assert TenantMetadata.objects.filter(issuer=issuer).exists()
    used_before = metric("used_last_good")

    sandbox.set_fault("status", target="metadata", status=503, tenant=world.tenant)
    try:
        response = connect(client, sandbox, team, world, as_user=world.member)
    finally:
        sandbox.clear_faults(target="metadata")

    assert response.status_code == 302, response.content.decode()[:500]
    assert code_exchanges(sandbox, world.user_app.client_id) == 2
    assert len(events(issuer, "used_last_good")) >= 1
    assert metric("used_last_good") > used_before


def test_a_refused_refetch_falls_back_to_the_last_good_metadata_without_touching_the_other_host(
    tenant: StubTenant, stub_http: StubHTTPServer, elsewhere: StubHTTPServer, team: Team, bob: User
) -> None:
    tenant.serve(tenant.document(), tenant.document(token_endpoint=elsewhere.url + "/token"))
    stub_http.route("POST", tenant.path("/v1/oauth/token"), StubResponse(body=TOKEN_RESPONSE))
    client = signed_in(bob)
    with clients.http_client() as http:
        clients.server_metadata(clients.tenant(tenant.slug), http)  # the good one, kept

    authorize_url = start(client, team, tenant.slug)
    response = callback(client, authorize_url, tenant.issuer)

    assert response.status_code == 302, response.content.decode()[:500]
    assert elsewhere.requests == []
    assert len(stub_http.requests_to(tenant.path("/v1/oauth/token"))) == 1
    assert len(events(tenant.issuer, "refused")) == 2  # at the start and at the callback
    assert len(events(tenant.issuer, "used_last_good")) == 2


def test_changed_endpoints_are_followed_and_told_to_the_operators_once(
    tenant: StubTenant, caplog: pytest.LogCaptureFixture
) -> None:
    moved = tenant.document(revocation_endpoint=tenant.issuer + "/v2/oauth/revoke")
    tenant.serve(tenant.document(), moved)
    resolved = clients.tenant(tenant.slug)
    changed_before = metric("endpoints_changed")

    with clients.http_client() as http, caplog.at_level(logging.WARNING):
        first = clients.server_metadata(resolved, http)
        second = clients.server_metadata(resolved, http)
        third = clients.server_metadata(resolved, http)

    assert first.revocation_endpoint == tenant.issuer + "/v1/oauth/revoke"
    assert second.revocation_endpoint == third.revocation_endpoint == moved["revocation_endpoint"]
    [event] = events(tenant.issuer, "endpoints_changed")
    assert moved["revocation_endpoint"] in event.message
    assert metric("endpoints_changed") == changed_before + 1
    told = [r for r in caplog.records if r.name.startswith("bipsync_partner.connections")]
    assert any("revocation_endpoint" in r.getMessage() for r in told)
    stored = TenantMetadata.objects.get(issuer=tenant.issuer)
    assert stored.document["revocation_endpoint"] == moved["revocation_endpoint"]


def test_last_good_metadata_that_fails_today_s_rules_is_not_used(
    tenant: StubTenant, elsewhere: StubHTTPServer
) -> None:
    # As an older version could have kept it, before endpoints were held to the issuer's host.
    TenantMetadata.objects.create(
        issuer=tenant.issuer, document=tenant.document(token_endpoint=elsewhere.url + "/token")
    )
    tenant.serve(StubResponse(status=503))

    with pytest.raises(ProtocolError) as raised, clients.http_client() as http:
        clients.server_metadata(clients.tenant(tenant.slug), http)

    assert raised.value.status == 503
    assert elsewhere.requests == []


# --- RFC 8414 §3.1 against the sandbox ---------------------------------------------------------


def test_discovery_asks_the_sandbox_at_the_rfc_8414_location_first(
    sandbox: Sandbox, settings: Settings
) -> None:
    world = new_world(sandbox)
    configure_partner(settings, sandbox, world)
    # The appended form answers 503, which discovery does not look past: only the RFC 8414 §3.1
    # form, asked first, can have served the document.
    sandbox.set_fault(
        "status",
        target="metadata",
        status=503,
        tenant=world.tenant,
        path_prefix=f"/t/{world.tenant}/api/.well-known/",
    )
    try:
        with clients.http_client() as http:
            metadata = clients.server_metadata(clients.tenant(world.tenant), http)
    finally:
        sandbox.clear_faults(target="metadata")
    assert metadata.issuer == world.api_base


def test_discovery_falls_back_to_the_sandbox_s_appended_location(
    sandbox: Sandbox, settings: Settings
) -> None:
    world = new_world(sandbox)
    configure_partner(settings, sandbox, world)
    sandbox.set_fault(
        "status",
        target="metadata",
        status=404,
        tenant=world.tenant,
        path_prefix="/.well-known/oauth-authorization-server/",
    )
    try:
        with clients.http_client() as http:
            metadata = clients.server_metadata(clients.tenant(world.tenant), http)
    finally:
        sandbox.clear_faults(target="metadata")
    assert metadata.token_endpoint == world.api_base + "/v1/oauth/token"
