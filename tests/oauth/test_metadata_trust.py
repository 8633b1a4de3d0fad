"""Which metadata the core trusts: endpoints held to the issuer's (and the web) host, RFC 8414
§3.1's well-known location first, and the pinned token endpoint of a started authorization.

Over real HTTP against the stub server; a second stub stands for another host."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from bipsync_partner.oauth import (
    CallbackSuccess,
    ClientConfig,
    GrantClient,
    HttpClient,
    MetadataError,
    ProtocolError,
    discover,
    metadata_urls,
    start_authorization,
    validate_metadata,
)
from tests.oauth.conftest import NOW, FakeClock, metadata_document
from tests.support.stub_http import StubHTTPServer, StubResponse

PROD = "https://acme-api.bipsync.com"
PROD_WEB = "https://acme.bipsync.com"
RFC_FORM = "/.well-known/oauth-authorization-server/t/acme/api"
APPENDED_FORM = "/t/acme/api/.well-known/oauth-authorization-server"
CLIENT = ClientConfig("partner-client", "partner-secret")
REDIRECT = "https://partner.example/connections/callback/"


@pytest.fixture
def elsewhere() -> Iterator[StubHTTPServer]:
    """Another host (another port of 127.0.0.1 is another origin), recording what reaches it."""
    server = StubHTTPServer().start()
    try:
        yield server
    finally:
        server.stop()


def prod_document(**overrides: Any) -> dict[str, Any]:
    return metadata_document(
        PROD, **{"authorization_endpoint": PROD_WEB + "/oauth/authorize", **overrides}
    )


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"token_endpoint": "https://evil.example/token"}, id="token-other-host"),
        pytest.param(
            {"token_endpoint": "https://acme-api.bipsync.com:8443/token"}, id="token-other-port"
        ),
        pytest.param(
            {"token_endpoint": "https://acme.bipsync.com/token"}, id="token-on-the-web-host"
        ),
        pytest.param(
            {"revocation_endpoint": "https://evil.example/revoke"}, id="revocation-other-host"
        ),
        pytest.param(
            {"device_authorization_endpoint": "https://evil.example/device"},
            id="device-other-host",
        ),
        pytest.param(
            {"authorization_endpoint": "https://evil.example/authorize"}, id="authorize-other-host"
        ),
        pytest.param(
            {"authorization_endpoint": PROD + "/oauth/authorize"}, id="authorize-off-the-web-host"
        ),
    ],
)
def test_it_refuses_an_endpoint_on_a_host_it_may_not_be_on(overrides: dict[str, Any]) -> None:
    with pytest.raises(MetadataError) as raised:
        validate_metadata(prod_document(**overrides), expected_issuer=PROD, web_base=PROD_WEB)
    assert raised.value.error == "invalid_metadata"
    assert not raised.value.transient


def test_it_accepts_the_issuer_host_however_its_origin_is_spelled() -> None:
    metadata = validate_metadata(
        prod_document(
            token_endpoint="https://ACME-API.bipsync.com:443/v1/oauth/token",
            authorization_endpoint="https://acme.bipsync.com:443/oauth/authorize",
        ),
        expected_issuer=PROD,
        web_base=PROD_WEB,
    )
    assert metadata.token_endpoint == "https://ACME-API.bipsync.com:443/v1/oauth/token"


def test_without_a_web_host_the_authorization_endpoint_must_be_on_the_issuer_host() -> None:
    with pytest.raises(MetadataError):
        validate_metadata(prod_document(), expected_issuer=PROD)
    assert validate_metadata(
        prod_document(authorization_endpoint=PROD + "/oauth/authorize"), expected_issuer=PROD
    )


def test_discovery_refuses_a_foreign_token_endpoint_and_logs_a_security_event(
    stub_http: StubHTTPServer,
    elsewhere: StubHTTPServer,
    http: HttpClient,
    issuer: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    document = metadata_document(issuer, token_endpoint=elsewhere.url + "/token")
    stub_http.route("GET", RFC_FORM, StubResponse(body=document))
    events: list[Any] = []
    with (
        caplog.at_level(logging.ERROR, logger="bipsync_partner.security"),
        pytest.raises(MetadataError) as raised,
    ):
        discover(issuer, http, allow_insecure_loopback=True, on_event=events.append)
    assert raised.value.error == "invalid_metadata"
    assert [e.kind for e in events] == ["refused"]
    security = [r for r in caplog.records if r.name == "bipsync_partner.security"]
    assert len(security) == 1
    assert "security event" in security[0].getMessage()
    assert elsewhere.requests == []


# --- RFC 8414 §3.1: where the document is --------------------------------------------------------


def test_for_an_issuer_with_a_path_the_well_known_string_goes_between_host_and_path() -> None:
    assert metadata_urls("http://127.0.0.1:8100/t/acme/api/") == (
        "http://127.0.0.1:8100/.well-known/oauth-authorization-server/t/acme/api",
        "http://127.0.0.1:8100/t/acme/api/.well-known/oauth-authorization-server",
    )
    assert metadata_urls(PROD) == (PROD + "/.well-known/oauth-authorization-server",)


def test_discovery_asks_the_rfc_8414_location_first(
    stub_http: StubHTTPServer, http: HttpClient, issuer: str
) -> None:
    stub_http.route("GET", RFC_FORM, StubResponse(body=metadata_document(issuer)))
    stub_http.route("GET", APPENDED_FORM, StubResponse(status=500))
    assert discover(issuer, http, allow_insecure_loopback=True).issuer == issuer
    assert [r.path for r in stub_http.requests] == [RFC_FORM]


def test_discovery_falls_back_to_the_appended_location_when_the_first_is_not_there(
    stub_http: StubHTTPServer, http: HttpClient, issuer: str
) -> None:
    stub_http.route("GET", APPENDED_FORM, StubResponse(body=metadata_document(issuer)))
    assert discover(issuer, http, allow_insecure_loopback=True).issuer == issuer
    assert [r.path for r in stub_http.requests] == [RFC_FORM, APPENDED_FORM]


def test_discovery_does_not_look_elsewhere_after_an_invalid_document(
    stub_http: StubHTTPServer, http: HttpClient, issuer: str
) -> None:
    foreign = metadata_document("http://127.0.0.1:1/t/evil/api")
    stub_http.route("GET", RFC_FORM, StubResponse(body=foreign))
    stub_http.route("GET", APPENDED_FORM, StubResponse(body=metadata_document(issuer)))
    with pytest.raises(MetadataError):
        discover(issuer, http, allow_insecure_loopback=True)
    assert [r.path for r in stub_http.requests] == [RFC_FORM]


# --- the pinned token endpoint ---------------------------------------------------------------------


def test_the_code_is_exchanged_at_the_token_endpoint_pinned_when_the_flow_started(
    stub_http: StubHTTPServer, http: HttpClient, issuer: str, clock: FakeClock
) -> None:
    started = validate_metadata(
        metadata_document(issuer), expected_issuer=issuer, allow_insecure_loopback=True
    )
    _, pending = start_authorization(started, CLIENT, redirect_uri=REDIRECT, scopes="a", now=NOW)
    since = validate_metadata(
        metadata_document(issuer, token_endpoint=issuer + "/v2/token"),
        expected_issuer=issuer,
        allow_insecure_loopback=True,
    )
    stub_http.route(
        "POST",
        "/t/acme/api/v1/oauth/token",
        StubResponse(body={"access_token": "a", "token_type": "Bearer", "expires_in": 60}),
    )
    grants = GrantClient(since, CLIENT, http, clock=clock, allow_insecure_loopback=True)
    grants.exchange_code(pending, CallbackSuccess(code="the-code", state=pending.state, iss=issuer))
    assert [r.path for r in stub_http.requests] == ["/t/acme/api/v1/oauth/token"]


def test_a_pinned_token_endpoint_on_another_host_is_refused_before_any_request(
    stub_http: StubHTTPServer,
    elsewhere: StubHTTPServer,
    http: HttpClient,
    issuer: str,
    clock: FakeClock,
) -> None:
    metadata = validate_metadata(
        metadata_document(issuer), expected_issuer=issuer, allow_insecure_loopback=True
    )
    _, pending = start_authorization(metadata, CLIENT, redirect_uri=REDIRECT, scopes="a", now=NOW)
    # As a row written before endpoints were held to the issuer's host could hold it.
    stored = {**pending.to_dict(), "token_endpoint": elsewhere.url + "/token"}
    old = type(pending).from_dict(stored)
    grants = GrantClient(metadata, CLIENT, http, clock=clock, allow_insecure_loopback=True)
    with pytest.raises(MetadataError):
        grants.exchange_code(old, CallbackSuccess(code="the-code", state=old.state, iss=issuer))
    assert elsewhere.requests == []


# --- the last good store and the event listener are the caller's; their failures are not ours ----


class _DownStore:
    """Stands for a last-good store whose database is down (it raises as psycopg would)."""

    def load(self, issuer: str, /) -> Any:
        raise ConnectionError("database down")

    def remember(self, issuer: str, document: Any, /) -> Any:
        raise ConnectionError("database down")


def _failing_listener(event: Any) -> None:
    raise ConnectionError("database down")


def test_a_failing_store_does_not_break_discovery(
    stub_http: StubHTTPServer, http: HttpClient, issuer: str
) -> None:
    stub_http.route(
        "GET", RFC_FORM, StubResponse(body=metadata_document(issuer)), StubResponse(status=503)
    )
    metadata = discover(issuer, http, allow_insecure_loopback=True, last_good=_DownStore())
    assert metadata.issuer == issuer
    # With the store down there is no last good copy: the refetch's failure is the answer.
    with pytest.raises(ProtocolError) as raised:
        discover(issuer, http, allow_insecure_loopback=True, last_good=_DownStore())
    assert raised.value.status == 503


def test_a_failing_listener_does_not_hide_the_refusal(
    stub_http: StubHTTPServer, elsewhere: StubHTTPServer, http: HttpClient, issuer: str
) -> None:
    document = metadata_document(issuer, token_endpoint=elsewhere.url + "/token")
    stub_http.route("GET", RFC_FORM, StubResponse(body=document))
    with pytest.raises(MetadataError) as raised:
        discover(issuer, http, allow_insecure_loopback=True, on_event=_failing_listener)
    assert raised.value.error == "invalid_metadata"
