"""Grants against a real local HTTP server: request shapes, client authentication, rotation,
the device poller's rules, revocation, and transport-level failures of the token endpoint."""

from __future__ import annotations

import base64
import threading
from datetime import timedelta
from typing import Any

import pytest

from bipsync_partner.oauth import (
    CallbackSuccess,
    ClientConfig,
    ConfigurationError,
    DeviceAuthorization,
    DeviceFlowError,
    DevicePollAttempt,
    GrantClient,
    HttpClient,
    OAuthError,
    ProtocolError,
    ServerMetadata,
    TransportError,
    start_authorization,
    validate_metadata,
)
from tests.oauth.conftest import NOW, FakeClock, metadata_document
from tests.support.stub_http import RecordedRequest, StubHTTPServer, StubResponse

TOKEN_PATH = "/t/acme/api/v1/oauth/token"
DEVICE_PATH = "/t/acme/api/v1/oauth/device"
REVOKE_PATH = "/t/acme/api/v1/oauth/revoke"
CONFIDENTIAL = ClientConfig("cid", "s3cret")
PUBLIC = ClientConfig("public-cid")
TOKEN_BODY = {
    "token_type": "bearer",
    "expires_in": 3600,
    "access_token": "access-1",
    "refresh_token": "refresh-1",
}


def _grants(
    metadata: ServerMetadata,
    http: HttpClient,
    clock: FakeClock,
    client: ClientConfig = CONFIDENTIAL,
) -> GrantClient:
    return GrantClient(metadata, client, http, clock=clock, allow_insecure_loopback=True)


def _with(metadata: ServerMetadata, **overrides: Any) -> ServerMetadata:
    return validate_metadata(
        metadata_document(metadata.issuer, **overrides),
        expected_issuer=metadata.issuer,
        allow_insecure_loopback=True,
    )


def _single(request_list: list[RecordedRequest]) -> dict[str, str]:
    assert len(request_list) == 1
    form = request_list[0].form
    assert all(len(values) == 1 for values in form.values()), "no parameter may repeat"
    return {key: values[0] for key, values in form.items()}


# --- authorization code ------------------------------------------------------------------------


def test_it_exchanges_a_code_with_the_verifier_and_exact_redirect_uri(
    stub_http: StubHTTPServer, metadata: ServerMetadata, http: HttpClient, clock: FakeClock
) -> None:
    stub_http.route("POST", TOKEN_PATH, StubResponse(body=TOKEN_BODY))
    _, pending = start_authorization(
        metadata, CONFIDENTIAL, redirect_uri="https://p.example/cb?x=1", scopes="a b", now=NOW
    )
    clock.advance(5)
    callback = CallbackSuccess(code="the-code", state=pending.state, iss=metadata.issuer)
    token = _grants(metadata, http, clock).exchange_code(pending, callback)
    assert _single(stub_http.requests_to(TOKEN_PATH)) == {
        "grant_type": "authorization_code",
        "code": "the-code",
        "redirect_uri": "https://p.example/cb?x=1",
        "code_verifier": pending.code_verifier,
        "client_id": "cid",
        "client_secret": "s3cret",
    }
    assert token.access_token == "access-1"
    assert token.scopes == ("a", "b")
    assert token.expires_at == NOW + timedelta(seconds=5 + 3600)  # from our receive time


def test_it_refuses_to_exchange_with_a_client_other_than_the_one_that_started(
    metadata: ServerMetadata, http: HttpClient, clock: FakeClock
) -> None:
    _, pending = start_authorization(
        metadata, ClientConfig("other"), redirect_uri="https://p.example/cb", scopes="a", now=NOW
    )
    with pytest.raises(ConfigurationError):
        _grants(metadata, http, clock).exchange_code(
            pending, CallbackSuccess(code="c", state=pending.state)
        )


# --- client authentication ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "server_methods", "expected"),
    [
        pytest.param(
            CONFIDENTIAL, ["client_secret_post", "client_secret_basic"], "post", id="post-preferred"
        ),
        pytest.param(CONFIDENTIAL, ["client_secret_basic"], "basic", id="basic-only-server"),
        pytest.param(CONFIDENTIAL, None, "basic", id="omitted-means-basic"),
        pytest.param(
            ClientConfig("cid", "s3cret", auth_methods=("client_secret_basic",)),
            ["client_secret_post", "client_secret_basic"],
            "basic",
            id="basic-configured",
        ),
        pytest.param(PUBLIC, ["none", "client_secret_post"], "none", id="public"),
        pytest.param(PUBLIC, None, "none", id="public-omitted"),
    ],
)
def test_it_authenticates_by_the_method_client_and_server_agree_on(
    stub_http: StubHTTPServer,
    metadata: ServerMetadata,
    http: HttpClient,
    clock: FakeClock,
    client: ClientConfig,
    server_methods: list[str] | None,
    expected: str,
) -> None:
    stub_http.route("POST", TOKEN_PATH, StubResponse(body=TOKEN_BODY))
    metadata = _with(metadata, token_endpoint_auth_methods_supported=server_methods)
    _grants(metadata, http, clock, client).refresh("r")
    request = stub_http.requests_to(TOKEN_PATH)[0]
    form = _single([request])
    if expected == "post":
        assert (form["client_id"], form["client_secret"]) == ("cid", "s3cret")
        assert "authorization" not in request.headers
    elif expected == "basic":
        assert "client_secret" not in form
        assert "client_id" not in form
        expected_header = "Basic " + base64.b64encode(b"cid:s3cret").decode()
        assert request.headers["authorization"] == expected_header
    else:
        assert form["client_id"] == "public-cid"
        assert "client_secret" not in form
        assert "authorization" not in request.headers


def test_it_form_encodes_credentials_before_basic_encoding_them(
    stub_http: StubHTTPServer, metadata: ServerMetadata, http: HttpClient, clock: FakeClock
) -> None:
    stub_http.route("POST", TOKEN_PATH, StubResponse(body=TOKEN_BODY))
    client = ClientConfig("id:1", "s&c=t", auth_methods=("client_secret_basic",))
    _grants(metadata, http, clock, client).refresh("r")
    header = stub_http.requests[0].headers["authorization"]
    assert base64.b64decode(header.removeprefix("Basic ")) == b"id%3A1:s%26c%3Dt"


@pytest.mark.parametrize(
    ("client", "server_methods"),
    [
        pytest.param(CONFIDENTIAL, ["private_key_jwt"], id="nothing-in-common"),
        pytest.param(PUBLIC, ["client_secret_post"], id="public-but-server-wants-secret"),
    ],
)
def test_it_refuses_when_client_and_server_share_no_auth_method(
    stub_http: StubHTTPServer,
    metadata: ServerMetadata,
    http: HttpClient,
    clock: FakeClock,
    client: ClientConfig,
    server_methods: list[str],
) -> None:
    metadata = _with(metadata, token_endpoint_auth_methods_supported=server_methods)
    with pytest.raises(ConfigurationError) as raised:
        _grants(metadata, http, clock, client).refresh("r")
    assert raised.value.error == "unsupported_auth_method"
    assert stub_http.requests == []


def test_a_client_config_never_shows_its_secret() -> None:
    assert "s3cret" not in repr(CONFIDENTIAL)


# --- refresh -----------------------------------------------------------------------------------


def test_refresh_takes_the_rotated_refresh_token(
    stub_http: StubHTTPServer, metadata: ServerMetadata, http: HttpClient, clock: FakeClock
) -> None:
    stub_http.route("POST", TOKEN_PATH, StubResponse(body={**TOKEN_BODY, "refresh_token": "r2"}))
    token = _grants(metadata, http, clock).refresh("r1", previous_scopes=["a"])
    assert token.refresh_token == "r2"
    assert token.scopes == ("a",)
    form = _single(stub_http.requests_to(TOKEN_PATH))
    assert (form["grant_type"], form["refresh_token"]) == ("refresh_token", "r1")
    assert "scope" not in form


def test_refresh_keeps_the_old_refresh_token_only_when_none_is_returned(
    stub_http: StubHTTPServer, metadata: ServerMetadata, http: HttpClient, clock: FakeClock
) -> None:
    body = {k: v for k, v in TOKEN_BODY.items() if k != "refresh_token"}
    stub_http.route("POST", TOKEN_PATH, StubResponse(body=body))
    assert _grants(metadata, http, clock).refresh("r1").refresh_token == "r1"


def test_refresh_can_narrow_the_scope(
    stub_http: StubHTTPServer, metadata: ServerMetadata, http: HttpClient, clock: FakeClock
) -> None:
    stub_http.route("POST", TOKEN_PATH, StubResponse(body=TOKEN_BODY))
    token = _grants(metadata, http, clock).refresh("r1", scopes=["a"], previous_scopes=["a", "b"])
    assert _single(stub_http.requests_to(TOKEN_PATH))["scope"] == "a"
    assert token.scopes == ("a",)


def test_a_reused_refresh_token_is_a_terminal_invalid_grant(
    stub_http: StubHTTPServer, metadata: ServerMetadata, http: HttpClient, clock: FakeClock
) -> None:
    stub_http.route(
        "POST",
        TOKEN_PATH,
        StubResponse(status=400, body={"error": "invalid_grant", "hint": "Token has been revoked"}),
    )
    with pytest.raises(ProtocolError) as raised:
        _grants(metadata, http, clock).refresh("old")
    assert (raised.value.error, raised.value.hint) == ("invalid_grant", "Token has been revoked")
    assert raised.value.terminal


# --- client credentials ------------------------------------------------------------------------


def test_client_credentials_builds_the_team_scope(
    stub_http: StubHTTPServer, metadata: ServerMetadata, http: HttpClient, clock: FakeClock
) -> None:
    body = {k: v for k, v in TOKEN_BODY.items() if k != "refresh_token"}
    stub_http.route("POST", TOKEN_PATH, StubResponse(body=body))
    token = _grants(metadata, http, clock).client_credentials(
        "5F0C5A3B2E1D4C6B7A8F9E0D", ["rest_api:read"]
    )
    form = _single(stub_http.requests_to(TOKEN_PATH))
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == "team_5f0c5a3b2e1d4c6b7a8f9e0d rest_api:read"
    assert token.refresh_token is None
    assert token.scopes == ("team_5f0c5a3b2e1d4c6b7a8f9e0d", "rest_api:read")


@pytest.mark.parametrize("team_id", ["", "abc", "g" * 24, "a" * 25, "team_" + "a" * 24])
def test_client_credentials_refuses_a_bad_team_id(
    metadata: ServerMetadata, http: HttpClient, clock: FakeClock, team_id: str
) -> None:
    with pytest.raises(ConfigurationError):
        _grants(metadata, http, clock).client_credentials(team_id)


# --- transport failures at the token endpoint --------------------------------------------------


@pytest.mark.parametrize(
    ("response", "error", "transient"),
    [
        pytest.param(
            StubResponse(status=302, headers={"Location": "https://evil.test/token"}),
            "unexpected_redirect",
            False,
            id="redirect-from-token-endpoint",
        ),
        pytest.param(
            StubResponse(body={**TOKEN_BODY, "pad": "x" * 5000}),
            "response_too_large",
            True,
            id="oversize-body",
        ),
        pytest.param(StubResponse(body=TOKEN_BODY, delay=3), "timeout", True, id="slow-server"),
        pytest.param(
            StubResponse(status=500, body="<html>Internal error</html>", content_type="text/html"),
            "invalid_response",
            True,
            id="html-error-page",
        ),
        pytest.param(StubResponse(body=b""), "invalid_response", True, id="empty-body"),
        pytest.param(StubResponse(body=["x"]), "invalid_response", True, id="non-object-json"),
        pytest.param(
            StubResponse(body={**TOKEN_BODY, "token_type": "mac"}),
            "unsupported_token_type",
            False,
            id="mac-token",
        ),
        pytest.param(
            StubResponse(body={**TOKEN_BODY, "expires_in": True}),
            "invalid_response",
            True,
            id="boolean-expires-in",
        ),
        pytest.param(
            StubResponse(body={"token_type": "bearer"}),
            "invalid_response",
            True,
            id="missing-access-token",
        ),
    ],
)
def test_the_token_endpoint_failures_surface_as_classified_errors(
    stub_http: StubHTTPServer,
    metadata: ServerMetadata,
    http: HttpClient,
    clock: FakeClock,
    response: StubResponse,
    error: str,
    transient: bool,
) -> None:
    stub_http.route("POST", TOKEN_PATH, response)
    with pytest.raises(OAuthError) as raised:
        _grants(metadata, http, clock).refresh("r1")
    assert raised.value.error == error
    assert raised.value.transient is transient
    assert len(stub_http.requests) == 1  # nothing followed, nothing retried behind our back


def test_a_rate_limited_token_request_carries_retry_after(
    stub_http: StubHTTPServer, metadata: ServerMetadata, http: HttpClient, clock: FakeClock
) -> None:
    stub_http.route(
        "POST",
        TOKEN_PATH,
        StubResponse(status=429, body={"error": "slow_down"}, headers={"Retry-After": "30"}),
    )
    with pytest.raises(ProtocolError) as raised:
        _grants(metadata, http, clock).refresh("r1")
    assert raised.value.transient
    assert raised.value.retry_after == 30.0


# --- device authorization ----------------------------------------------------------------------

DEVICE_BODY = {
    "device_code": "dev-code-secret",
    "user_code": "ABCD1234",
    "verification_uri": "http://127.0.0.1:8100/t/acme/web/oauth/device",
    "verification_uri_complete": "http://127.0.0.1:8100/t/acme/web/oauth/device?user_code=ABCD1234",
    "expires_in": 60,
}


def _error(code: str, status: int = 400) -> StubResponse:
    return StubResponse(status=status, body={"error": code})


def _device(stub_http: StubHTTPServer, grants: GrantClient, **changes: Any) -> DeviceAuthorization:
    stub_http.route("POST", DEVICE_PATH, StubResponse(body={**DEVICE_BODY, **changes}))
    return grants.start_device_authorization(["rest_api:read"])


def test_it_starts_a_device_authorization_with_the_default_interval(
    stub_http: StubHTTPServer, metadata: ServerMetadata, http: HttpClient, clock: FakeClock
) -> None:
    device = _device(stub_http, _grants(metadata, http, clock, PUBLIC))
    form = _single(stub_http.requests_to(DEVICE_PATH))
    assert form == {"client_id": "public-cid", "scope": "rest_api:read"}
    assert device.user_code == "ABCD1234"
    assert device.interval == 5
    assert device.expires_at == NOW + timedelta(seconds=60)
    assert device.verification_uri_complete == DEVICE_BODY["verification_uri_complete"]
    assert "dev-code-secret" not in repr(device)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"device_code": None}, id="no-device-code"),
        pytest.param({"user_code": 12345678}, id="user-code-int"),
        pytest.param({"expires_in": None}, id="no-expires-in"),
        pytest.param({"expires_in": True}, id="boolean-expires-in"),
        pytest.param({"interval": "fast"}, id="bad-interval"),
        pytest.param({"verification_uri": "http://evil.test/device"}, id="http-public-uri"),
        pytest.param({"verification_uri": "javascript:alert(1)"}, id="javascript-uri"),
    ],
)
def test_it_rejects_a_malformed_device_authorization_response(
    stub_http: StubHTTPServer,
    metadata: ServerMetadata,
    http: HttpClient,
    clock: FakeClock,
    changes: dict[str, Any],
) -> None:
    body = {k: v for k, v in {**DEVICE_BODY, **changes}.items() if v is not None}
    stub_http.route("POST", DEVICE_PATH, StubResponse(body=body))
    with pytest.raises(ProtocolError) as raised:
        _grants(metadata, http, clock, PUBLIC).start_device_authorization("a")
    assert raised.value.error == "invalid_response"


def test_the_poller_honours_pending_and_slow_down_then_returns_the_token(
    stub_http: StubHTTPServer, metadata: ServerMetadata, http: HttpClient, clock: FakeClock
) -> None:
    grants = _grants(metadata, http, clock, PUBLIC)
    device = _device(stub_http, grants)
    stub_http.route(
        "POST",
        TOKEN_PATH,
        _error("authorization_pending"),
        _error("slow_down"),
        _error("authorization_pending"),
        StubResponse(body=TOKEN_BODY),
    )
    attempts: list[DevicePollAttempt] = []
    token = grants.wait_for_device_token(device, sleep=clock.sleep, on_poll=attempts.append)
    assert token.access_token == "access-1"
    assert clock.sleeps == [5, 5, 10, 10]
    assert [a.outcome for a in attempts] == [
        "authorization_pending",
        "slow_down",
        "authorization_pending",
    ]
    form = _single(stub_http.requests_to(TOKEN_PATH)[:1])
    assert form == {
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "device_code": "dev-code-secret",
        "client_id": "public-cid",
    }


def test_the_poller_uses_the_servers_interval(
    stub_http: StubHTTPServer, metadata: ServerMetadata, http: HttpClient, clock: FakeClock
) -> None:
    grants = _grants(metadata, http, clock, PUBLIC)
    device = _device(stub_http, grants, interval=2)
    stub_http.route(
        "POST", TOKEN_PATH, _error("authorization_pending"), StubResponse(body=TOKEN_BODY)
    )
    grants.wait_for_device_token(device, sleep=clock.sleep)
    assert clock.sleeps == [2, 2]


@pytest.mark.parametrize("code", ["access_denied", "expired_token"])
def test_the_poller_stops_on_a_terminal_answer(
    stub_http: StubHTTPServer,
    metadata: ServerMetadata,
    http: HttpClient,
    clock: FakeClock,
    code: str,
) -> None:
    grants = _grants(metadata, http, clock, PUBLIC)
    device = _device(stub_http, grants)
    stub_http.route("POST", TOKEN_PATH, _error("authorization_pending"), _error(code))
    with pytest.raises(ProtocolError) as raised:
        grants.wait_for_device_token(device, sleep=clock.sleep)
    assert raised.value.error == code
    assert raised.value.terminal
    assert len(stub_http.requests_to(TOKEN_PATH)) == 2


def test_the_poller_stops_when_expires_in_passes(
    stub_http: StubHTTPServer, metadata: ServerMetadata, http: HttpClient, clock: FakeClock
) -> None:
    grants = _grants(metadata, http, clock, PUBLIC)
    device = _device(stub_http, grants, expires_in=12)
    stub_http.route("POST", TOKEN_PATH, _error("authorization_pending"))
    with pytest.raises(DeviceFlowError) as raised:
        grants.wait_for_device_token(device, sleep=clock.sleep)
    assert raised.value.error == "expired_token"
    assert clock.sleeps == [5, 5, 2]
    assert len(stub_http.requests_to(TOKEN_PATH)) == 2  # never polls at or after the deadline


def test_the_poller_backs_off_exponentially_on_transient_failures(
    stub_http: StubHTTPServer, metadata: ServerMetadata, http: HttpClient, clock: FakeClock
) -> None:
    grants = _grants(metadata, http, clock, PUBLIC)
    device = _device(stub_http, grants)
    stub_http.route(
        "POST",
        TOKEN_PATH,
        StubResponse(status=502, body="<html>bad gateway</html>"),
        StubResponse(status=503, body={"error": "temporarily_unavailable"}),
        StubResponse(body=TOKEN_BODY),
    )
    grants.wait_for_device_token(device, sleep=clock.sleep)
    assert clock.sleeps == [5, 10, 20]


def test_the_poller_can_be_cancelled_with_a_callback(
    stub_http: StubHTTPServer, metadata: ServerMetadata, http: HttpClient, clock: FakeClock
) -> None:
    grants = _grants(metadata, http, clock, PUBLIC)
    device = _device(stub_http, grants)
    stub_http.route("POST", TOKEN_PATH, _error("authorization_pending"))
    polls = iter([False, False, False, True])
    with pytest.raises(DeviceFlowError) as raised:
        grants.wait_for_device_token(device, sleep=clock.sleep, cancel=lambda: next(polls))
    assert raised.value.error == "cancelled"
    assert len(stub_http.requests_to(TOKEN_PATH)) == 1


def test_the_poller_wakes_up_at_once_when_its_event_is_set(
    stub_http: StubHTTPServer, metadata: ServerMetadata, http: HttpClient
) -> None:
    # Real clock and real waiting: the point is that Event.set() interrupts the 5 s interval.
    grants = GrantClient(metadata, PUBLIC, http, allow_insecure_loopback=True)
    device = _device(stub_http, grants)
    cancel = threading.Event()
    threading.Timer(0.1, cancel.set).start()
    with pytest.raises(DeviceFlowError) as raised:
        grants.wait_for_device_token(device, cancel=cancel)
    assert raised.value.error == "cancelled"
    assert stub_http.requests_to(TOKEN_PATH) == []


def test_device_flow_needs_an_advertised_endpoint(
    metadata: ServerMetadata, http: HttpClient, clock: FakeClock
) -> None:
    grants = _grants(_with(metadata, device_authorization_endpoint=None), http, clock, PUBLIC)
    with pytest.raises(ConfigurationError) as raised:
        grants.start_device_authorization("a")
    assert raised.value.error == "unsupported_endpoint"


# --- revocation --------------------------------------------------------------------------------


def test_it_revokes_a_token_with_a_hint(
    stub_http: StubHTTPServer, metadata: ServerMetadata, http: HttpClient, clock: FakeClock
) -> None:
    stub_http.route("POST", REVOKE_PATH, StubResponse(body=b""))
    _grants(metadata, http, clock).revoke("refresh-1", token_type_hint="refresh_token")
    assert _single(stub_http.requests_to(REVOKE_PATH)) == {
        "token": "refresh-1",
        "token_type_hint": "refresh_token",
        "client_id": "cid",
        "client_secret": "s3cret",
    }


def test_revocation_uses_basic_when_the_server_lists_no_revocation_methods(
    stub_http: StubHTTPServer, metadata: ServerMetadata, http: HttpClient, clock: FakeClock
) -> None:
    stub_http.route("POST", REVOKE_PATH, StubResponse(body=b""))
    metadata = _with(metadata, revocation_endpoint_auth_methods_supported=None)
    _grants(metadata, http, clock).revoke("t")
    assert stub_http.requests[0].headers["authorization"].startswith("Basic ")


def test_revocation_errors_are_classified(
    stub_http: StubHTTPServer, metadata: ServerMetadata, http: HttpClient, clock: FakeClock
) -> None:
    stub_http.route(
        "POST",
        REVOKE_PATH,
        StubResponse(status=503, body=b"", headers={"Retry-After": "10"}),
        _error("unsupported_token_type"),
    )
    grants = _grants(metadata, http, clock)
    with pytest.raises(ProtocolError) as raised:
        grants.revoke("t")
    assert (raised.value.transient, raised.value.retry_after) == (True, 10.0)
    with pytest.raises(ProtocolError) as raised:
        grants.revoke("t")
    assert raised.value.error == "unsupported_token_type"
    assert raised.value.terminal


def test_revocation_needs_an_advertised_endpoint(
    stub_http: StubHTTPServer, metadata: ServerMetadata, http: HttpClient, clock: FakeClock
) -> None:
    grants = _grants(_with(metadata, revocation_endpoint=None), http, clock)
    assert not grants.metadata.supports_revocation
    with pytest.raises(ConfigurationError) as raised:
        grants.revoke("t")
    assert raised.value.error == "unsupported_endpoint"
    assert stub_http.requests == []


def test_a_network_failure_during_revocation_is_a_transport_error(
    http: HttpClient, clock: FakeClock
) -> None:
    # Nothing listens on port 9 (discard): the issuer's own host refuses the connection.
    issuer = "http://127.0.0.1:9/t/acme/api"
    metadata = validate_metadata(
        metadata_document(issuer), expected_issuer=issuer, allow_insecure_loopback=True
    )
    with pytest.raises(TransportError):
        _grants(metadata, http, clock).revoke("t")
