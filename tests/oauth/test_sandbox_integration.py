"""The OAuth core against the running sandbox over real HTTP: discovery, every grant, revocation,
rotated-refresh-token reuse and each device-flow polling outcome.

The sandbox is the session-scoped subprocess of ``tests/support/sandbox.py``; every test gets a
fresh tenant (``sandbox_world``), so tests cannot see each other's tokens, lifetimes or faults.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest

from bipsync_partner.oauth import (
    AuthorizationClients,
    CallbackDenied,
    CallbackError,
    CallbackSuccess,
    ClientConfig,
    DeviceFlowError,
    DevicePollAttempt,
    GrantClient,
    HostTemplates,
    HttpClient,
    InMemoryMetadataCache,
    InMemoryPendingStore,
    MetadataError,
    PendingAuthorization,
    ProtocolError,
    ServerMetadata,
    Tenant,
    Token,
    TransportError,
    TransportSettings,
    complete_callback,
    create_httpx_client,
    discover,
    resolve_tenant,
    start_authorization,
    validate_callback,
)
from bipsync_partner.oauth.grants import DEVICE_CODE_GRANT_TYPE
from tests.support.sandbox import Sandbox, SandboxWorld, WorldApp, WorldUser


def _now() -> datetime:
    return datetime.now(UTC)


def _client(app: WorldApp, **kwargs: object) -> ClientConfig:
    return ClientConfig(app.client_id, app.client_secret, **kwargs)  # type: ignore[arg-type]


def _no_sleep(seconds: float) -> None:
    """Stands in for time.sleep where the sandbox's decision is already made."""


@pytest.fixture
def http() -> Iterator[HttpClient]:
    with HttpClient(TransportSettings(timeout=10, total_timeout=20)) as client:
        yield client


@pytest.fixture
def world(sandbox_world: SandboxWorld) -> SandboxWorld:
    return sandbox_world


@pytest.fixture
def tenant(world: SandboxWorld) -> Tenant:
    sandbox = world.sandbox
    return resolve_tenant(world.tenant, HostTemplates(sandbox.api_template, sandbox.web_template))


@pytest.fixture
def metadata(tenant: Tenant, http: HttpClient) -> ServerMetadata:
    return discover(tenant.issuer, http, allow_insecure_loopback=True)


def _grants(metadata: ServerMetadata, app: WorldApp, http: HttpClient) -> GrantClient:
    return GrantClient(metadata, _client(app), http, allow_insecure_loopback=True)


def _authorize(
    world: SandboxWorld,
    metadata: ServerMetadata,
    clients: AuthorizationClients,
    user: WorldUser,
    *,
    kind: str = "user",
    approve: bool = True,
    scopes: tuple[str, ...] = ("rest_api:read", "rest_api:fields:read"),
) -> tuple[PendingAuthorization, str]:
    """Start an authorization with the core, let ``user`` decide at the sandbox's pages, and
    return the pending authorization and the query of the redirect back to us."""
    url, pending = start_authorization(
        metadata,
        clients,
        redirect_uri=world.sandbox.redirect_uri,
        scopes=scopes,
        now=_now(),
        kind=kind,  # type: ignore[arg-type]
    )
    location = world.sandbox.authorize(url, user.email, user.password, approve=approve)
    assert location.startswith(world.sandbox.redirect_uri)
    return pending, urlsplit(location).query


def _connect(
    world: SandboxWorld, metadata: ServerMetadata, http: HttpClient
) -> tuple[GrantClient, Token]:
    clients = AuthorizationClients(user=_client(world.user_app))
    pending, query = _authorize(world, metadata, clients, world.member)
    result = validate_callback(query, pending, now=_now())
    assert isinstance(result, CallbackSuccess)
    grants = _grants(metadata, world.user_app, http)
    return grants, grants.exchange_code(pending, result)


# --- discovery ---------------------------------------------------------------------------------


def test_it_discovers_the_sandbox_tenants_metadata(
    world: SandboxWorld, tenant: Tenant, http: HttpClient
) -> None:
    cache = InMemoryMetadataCache()
    metadata = discover(tenant.issuer, http, cache=cache, allow_insecure_loopback=True)
    assert metadata.issuer == world.sandbox.api_base(world.tenant)
    assert metadata.token_endpoint == world.sandbox.token_url(world.tenant)
    assert metadata.device_authorization_endpoint == world.sandbox.device_url(world.tenant)
    assert metadata.revocation_endpoint == world.sandbox.revoke_url(world.tenant)
    assert metadata.authorization_endpoint == world.sandbox.authorize_url(world.tenant)
    assert metadata.authorization_response_iss_parameter_supported
    assert discover(tenant.issuer, http, cache=cache, allow_insecure_loopback=True) == metadata


def test_discovery_refuses_the_sandbox_without_the_loopback_flag(
    tenant: Tenant, http: HttpClient
) -> None:
    with pytest.raises(MetadataError):
        discover(tenant.issuer, http)


def test_discovery_refuses_an_issuer_spelled_differently_from_the_published_one(
    world: SandboxWorld, http: HttpClient
) -> None:
    # Same server, but "localhost" instead of the 127.0.0.1 it publishes: RFC 8414 §3.3 wants
    # identical strings, so this must fail rather than "probably be the same".
    localhost = world.sandbox.api_base(world.tenant).replace("127.0.0.1", "localhost")
    with pytest.raises(MetadataError) as raised:
        discover(localhost, http, allow_insecure_loopback=True)
    assert raised.value.error == "invalid_issuer"


def test_discovery_of_an_unknown_tenant_is_a_terminal_error(
    sandbox: Sandbox, http: HttpClient
) -> None:
    with pytest.raises(MetadataError) as raised:
        discover(sandbox.api_base("no-such-tenant"), http, allow_insecure_loopback=True)
    assert raised.value.terminal


# --- authorization code ------------------------------------------------------------------------


def test_the_user_flow_yields_bearer_tokens_with_the_requested_scope(
    world: SandboxWorld, metadata: ServerMetadata, http: HttpClient
) -> None:
    _, token = _connect(world, metadata, http)
    assert token.token_type == "Bearer"
    assert token.refresh_token
    assert token.scopes == ("rest_api:read", "rest_api:fields:read")  # Bipsync sends no scope
    remaining = token.expires_in(_now())
    assert remaining is not None
    assert 3500 < remaining <= 3600


def test_the_service_account_flow_uses_the_service_client_and_an_admin_approves(
    world: SandboxWorld, metadata: ServerMetadata, http: HttpClient
) -> None:
    clients = AuthorizationClients(
        user=_client(world.user_app), service_account=_client(world.service_app)
    )
    pending, query = _authorize(world, metadata, clients, world.admin, kind="service_account")
    assert pending.client_id == world.service_app.client_id
    result = validate_callback(query, pending, now=_now())
    assert isinstance(result, CallbackSuccess)
    grants = GrantClient(
        metadata, clients.client_for(pending.kind), http, allow_insecure_loopback=True
    )
    token = grants.exchange_code(pending, result)
    assert token.refresh_token


def test_a_denied_consent_comes_back_as_a_denied_result(
    world: SandboxWorld, metadata: ServerMetadata
) -> None:
    clients = AuthorizationClients(user=_client(world.user_app))
    pending, query = _authorize(world, metadata, clients, world.member, approve=False)
    result = validate_callback(query, pending, now=_now())
    assert isinstance(result, CallbackDenied)
    assert result.access_denied


def test_a_replayed_callback_is_refused(world: SandboxWorld, metadata: ServerMetadata) -> None:
    clients = AuthorizationClients(user=_client(world.user_app))
    pending, query = _authorize(world, metadata, clients, world.member)
    store = InMemoryPendingStore()
    store.put(pending)
    assert isinstance(complete_callback(query, store, now=_now()), CallbackSuccess)
    with pytest.raises(CallbackError) as raised:
        complete_callback(query, store, now=_now())
    assert raised.value.error == "unknown_state"


def test_a_callback_for_another_tenants_authorization_fails_the_iss_check(
    world: SandboxWorld, metadata: ServerMetadata, sandbox: Sandbox
) -> None:
    clients = AuthorizationClients(user=_client(world.user_app))
    pending, query = _authorize(world, metadata, clients, world.member)
    other = PendingAuthorization.from_dict(
        {**pending.to_dict(), "issuer": sandbox.api_base("another-tenant")}
    )
    with pytest.raises(CallbackError) as raised:
        validate_callback(query, other, now=_now())
    assert raised.value.error == "iss_mismatch"


def test_a_reused_code_is_refused(
    world: SandboxWorld, metadata: ServerMetadata, http: HttpClient
) -> None:
    clients = AuthorizationClients(user=_client(world.user_app))
    pending, query = _authorize(world, metadata, clients, world.member)
    result = validate_callback(query, pending, now=_now())
    assert isinstance(result, CallbackSuccess)
    grants = _grants(metadata, world.user_app, http)
    grants.exchange_code(pending, result)
    with pytest.raises(ProtocolError) as raised:
        grants.exchange_code(pending, result)
    assert raised.value.error == "invalid_grant"
    assert raised.value.terminal


def test_a_wrong_client_secret_is_a_terminal_invalid_client(
    world: SandboxWorld, metadata: ServerMetadata, http: HttpClient
) -> None:
    grants = GrantClient(
        metadata,
        ClientConfig(world.user_app.client_id, "wrong-secret"),
        http,
        allow_insecure_loopback=True,
    )
    with pytest.raises(ProtocolError) as raised:
        grants.refresh("anything")
    assert (raised.value.error, raised.value.status) == ("invalid_client", 401)
    assert raised.value.terminal


# --- refresh -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth_methods",
    [("client_secret_post",), ("client_secret_basic",)],
    ids=["client-secret-post", "client-secret-basic"],
)
def test_refresh_rotates_and_the_old_refresh_token_then_fails(
    world: SandboxWorld,
    metadata: ServerMetadata,
    http: HttpClient,
    auth_methods: tuple[str, ...],
) -> None:
    _, first = _connect(world, metadata, http)
    assert first.refresh_token
    grants = GrantClient(
        metadata,
        _client(world.user_app, auth_methods=auth_methods),
        http,
        allow_insecure_loopback=True,
    )
    second = grants.refresh(first.refresh_token, previous_scopes=first.scopes)
    assert second.refresh_token
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    assert second.scopes == first.scopes
    with pytest.raises(ProtocolError) as raised:
        grants.refresh(first.refresh_token)
    assert raised.value.error == "invalid_grant"
    assert raised.value.terminal


def test_refresh_may_narrow_but_not_widen_the_scope(
    world: SandboxWorld, metadata: ServerMetadata, http: HttpClient
) -> None:
    grants, token = _connect(world, metadata, http)
    assert token.refresh_token
    narrowed = grants.refresh(token.refresh_token, scopes=["rest_api:read"])
    assert narrowed.scopes == ("rest_api:read",)
    assert narrowed.refresh_token
    with pytest.raises(ProtocolError) as raised:
        grants.refresh(narrowed.refresh_token, scopes=["rest_api:read", "rest_api:write"])
    assert raised.value.error == "invalid_scope"
    assert raised.value.terminal


# --- client credentials ------------------------------------------------------------------------


def test_client_credentials_gets_a_team_token_without_refresh_token(
    world: SandboxWorld, metadata: ServerMetadata, http: HttpClient
) -> None:
    token = _grants(metadata, world.team_app, http).client_credentials(
        world.team_id, ["rest_api:read"]
    )
    assert token.refresh_token is None
    assert f"team_{world.team_id}" in token.scopes


def test_client_credentials_for_another_team_is_refused(
    world: SandboxWorld, metadata: ServerMetadata, http: HttpClient
) -> None:
    with pytest.raises(ProtocolError) as raised:
        _grants(metadata, world.team_app, http).client_credentials("0" * 24, ["rest_api:read"])
    assert raised.value.terminal


# --- device authorization ----------------------------------------------------------------------


def test_the_device_flow_returns_the_token_once_approved(
    world: SandboxWorld, metadata: ServerMetadata, http: HttpClient
) -> None:
    grants = _grants(metadata, world.device_app, http)
    device = grants.start_device_authorization(["rest_api:read"])
    assert len(device.user_code) == 8
    assert device.interval == 5  # Bipsync sends no interval: RFC 8628's default
    assert device.verification_uri == world.web_base + "/oauth/device"
    world.sandbox.approve_device(
        world.tenant, device.user_code, world.member.email, world.member.password
    )
    token = grants.wait_for_device_token(device, sleep=_no_sleep)
    assert token.refresh_token
    assert token.scopes == ("rest_api:read",)


def test_the_device_poller_sees_pending_then_slow_down_and_keeps_going(
    world: SandboxWorld, metadata: ServerMetadata, http: HttpClient
) -> None:
    grants = _grants(metadata, world.device_app, http)
    device = grants.start_device_authorization(["rest_api:read"])
    waits: list[float] = []
    attempts: list[DevicePollAttempt] = []

    def on_poll(attempt: DevicePollAttempt) -> None:
        attempts.append(attempt)
        if attempt.outcome == "slow_down":
            world.sandbox.approve_device(
                world.tenant, device.user_code, world.member.email, world.member.password
            )

    # Not really waiting makes the second poll too fast for the sandbox: it answers slow_down.
    token = grants.wait_for_device_token(device, sleep=waits.append, on_poll=on_poll)
    assert token.access_token
    assert [a.outcome for a in attempts] == ["authorization_pending", "slow_down"]
    assert waits == [5, 5, 10]


def test_the_device_poller_stops_on_access_denied(
    world: SandboxWorld, metadata: ServerMetadata, http: HttpClient
) -> None:
    grants = _grants(metadata, world.device_app, http)
    device = grants.start_device_authorization(["rest_api:read"])
    with pytest.raises(ProtocolError) as pending:
        grants.poll_device_token(device)
    assert pending.value.error == "authorization_pending"
    assert pending.value.transient
    world.sandbox.approve_device(
        world.tenant, device.user_code, world.member.email, world.member.password, approve=False
    )
    with pytest.raises(ProtocolError) as raised:
        grants.wait_for_device_token(device, sleep=_no_sleep)
    assert raised.value.error == "access_denied"
    assert raised.value.terminal


def test_the_device_poll_reports_expired_token_from_the_server(
    world: SandboxWorld, metadata: ServerMetadata, http: HttpClient
) -> None:
    world.sandbox.set_lifetimes(device=1, client_id=world.device_app.client_id)
    grants = _grants(metadata, world.device_app, http)
    device = grants.start_device_authorization(["rest_api:read"])
    time.sleep(1.2)  # the only real wait: the sandbox's own clock must pass the device lifetime
    with pytest.raises(ProtocolError) as raised:
        grants.poll_device_token(device)
    assert raised.value.error == "expired_token"
    assert raised.value.terminal


def test_the_device_poller_gives_up_at_expires_in_on_its_own_clock(
    world: SandboxWorld, metadata: ServerMetadata, http: HttpClient
) -> None:
    world.sandbox.set_lifetimes(device=1, client_id=world.device_app.client_id)
    grants = _grants(metadata, world.device_app, http)
    device = grants.start_device_authorization(["rest_api:read"])
    with pytest.raises(DeviceFlowError) as raised:
        grants.wait_for_device_token(device, sleep=time.sleep)
    assert raised.value.error == "expired_token"
    assert (
        world.sandbox.token_requests(
            world.device_app.client_id, grant_type=DEVICE_CODE_GRANT_TYPE, outcome=None
        )
        == 0
    )


# --- revocation --------------------------------------------------------------------------------


def test_a_revoked_refresh_token_can_no_longer_be_used(
    world: SandboxWorld, metadata: ServerMetadata, http: HttpClient
) -> None:
    grants, token = _connect(world, metadata, http)
    assert token.refresh_token
    grants.revoke(token.refresh_token, token_type_hint="refresh_token")
    with pytest.raises(ProtocolError) as raised:
        grants.refresh(token.refresh_token)
    assert raised.value.error == "invalid_grant"


def test_revoking_an_unknown_token_succeeds_quietly(
    world: SandboxWorld, metadata: ServerMetadata, http: HttpClient
) -> None:
    # RFC 7009 §2.2: an invalid token is answered 200 as well.
    _grants(metadata, world.user_app, http).revoke("not-a-token", token_type_hint="access_token")


# --- the sandbox's injected faults ---------------------------------------------------------------


def test_a_rate_limited_refresh_is_transient_and_carries_retry_after(
    world: SandboxWorld, metadata: ServerMetadata, http: HttpClient
) -> None:
    grants, token = _connect(world, metadata, http)
    assert token.refresh_token
    world.sandbox.set_fault(
        "rate_limit", client_id=world.user_app.client_id, delay_ms=3000, count=1
    )
    with pytest.raises(ProtocolError) as raised:
        grants.refresh(token.refresh_token)
    assert (raised.value.status, raised.value.retry_after) == (429, 3.0)
    assert raised.value.transient
    assert grants.refresh(token.refresh_token).refresh_token  # the pair was not rotated


def test_a_slow_token_endpoint_times_out_as_a_transient_error(
    world: SandboxWorld, metadata: ServerMetadata
) -> None:
    world.sandbox.set_fault("slow", client_id=world.user_app.client_id, delay_ms=1500, count=1)
    with HttpClient(TransportSettings(timeout=0.5)) as impatient:
        grants = _grants(metadata, world.user_app, impatient)
        with pytest.raises(TransportError) as raised:
            grants.refresh("whatever")
    assert raised.value.error == "timeout"
    assert raised.value.transient


# --- using the token -----------------------------------------------------------------------------


def test_the_bearer_auth_of_a_token_opens_the_rest_api_until_it_is_revoked(
    world: SandboxWorld, metadata: ServerMetadata, http: HttpClient
) -> None:
    grants, token = _connect(world, metadata, http)
    url = world.api_base + "/v1/research"
    with create_httpx_client() as api:
        assert api.get(url, auth=token.bearer_auth()).status_code == 200
        grants.revoke(token.access_token, token_type_hint="access_token")
        assert api.get(url, auth=token.bearer_auth()).status_code == 401
