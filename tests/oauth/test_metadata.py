"""RFC 8414 discovery: validation table, and fetching over real HTTP with the cache."""

from __future__ import annotations

from typing import Any

import pytest

from bipsync_partner.oauth import (
    HttpClient,
    InMemoryMetadataCache,
    MetadataError,
    ProtocolError,
    TransportError,
    discover,
    metadata_url,
    validate_metadata,
)
from bipsync_partner.oauth.metadata import cache_key
from tests.oauth.conftest import metadata_document
from tests.support.stub_http import StubHTTPServer, StubResponse

PROD = "https://acme-api.bipsync.com"
# RFC 8414 §3.1's form for the stub's issuer (it has a path), which discovery tries first.
WELL_KNOWN = "/.well-known/oauth-authorization-server/t/acme/api"


def test_it_accepts_a_bipsync_shaped_document() -> None:
    metadata = validate_metadata(metadata_document(PROD), expected_issuer=PROD)
    assert metadata.issuer == PROD
    assert metadata.token_endpoint == PROD + "/v1/oauth/token"
    assert metadata.supports_revocation
    assert metadata.supports_device_authorization
    assert metadata.authorization_response_iss_parameter_supported


def test_it_leaves_omitted_optional_members_unset() -> None:
    document = metadata_document(
        PROD,
        device_authorization_endpoint=None,
        revocation_endpoint=None,
        token_endpoint_auth_methods_supported=None,
        authorization_response_iss_parameter_supported=None,
        code_challenge_methods_supported=None,
    )
    metadata = validate_metadata(document, expected_issuer=PROD)
    assert metadata.revocation_endpoint is None
    assert not metadata.supports_device_authorization
    assert metadata.token_endpoint_auth_methods_supported is None
    assert not metadata.authorization_response_iss_parameter_supported


@pytest.mark.parametrize(
    ("overrides", "expected_issuer"),
    [
        pytest.param({"issuer": "https://evil-api.bipsync.com"}, PROD, id="wrong-issuer"),
        pytest.param({"issuer": PROD + "/"}, PROD, id="issuer-trailing-slash"),
        pytest.param({"issuer": PROD.upper()}, PROD, id="issuer-case"),
        pytest.param({"issuer": None}, PROD, id="issuer-missing"),
        pytest.param({"issuer": ["x"]}, PROD, id="issuer-not-string"),
        pytest.param({"token_endpoint": None}, PROD, id="no-token-endpoint"),
        pytest.param({"authorization_endpoint": None}, PROD, id="no-authorization-endpoint"),
        pytest.param(
            {"token_endpoint": "http://acme-api.bipsync.com/v1/oauth/token"}, PROD, id="http"
        ),
        pytest.param(
            {"token_endpoint": "http://127.0.0.1/token"}, PROD, id="http-loopback-not-allowed"
        ),
        pytest.param({"token_endpoint": "/v1/oauth/token"}, PROD, id="relative"),
        pytest.param({"token_endpoint": PROD + "/token#frag"}, PROD, id="fragment"),
        pytest.param({"token_endpoint": "javascript:alert(1)"}, PROD, id="javascript"),
        pytest.param(
            {"token_endpoint": "https://acme-api.bipsync.com@evil.test/token"}, PROD, id="userinfo"
        ),
        pytest.param({"token_endpoint": 42}, PROD, id="endpoint-not-string"),
        pytest.param({"revocation_endpoint": "http://x.test/r"}, PROD, id="insecure-optional"),
        pytest.param({"code_challenge_methods_supported": ["plain"]}, PROD, id="no-s256"),
        pytest.param({"token_endpoint_auth_methods_supported": "none"}, PROD, id="list-as-str"),
        pytest.param(
            {"authorization_response_iss_parameter_supported": "true"}, PROD, id="iss-flag-str"
        ),
        pytest.param(
            {"issuer": "http://acme-api.bipsync.com"},
            "http://acme-api.bipsync.com",
            id="http-issuer",
        ),
    ],
)
def test_it_rejects_invalid_metadata(overrides: dict[str, Any], expected_issuer: str) -> None:
    with pytest.raises(MetadataError) as raised:
        validate_metadata(metadata_document(PROD, **overrides), expected_issuer=expected_issuer)
    assert not raised.value.transient


def test_it_accepts_http_on_loopback_only_when_allowed() -> None:
    issuer = "http://127.0.0.1:8100/t/acme/api"
    document = metadata_document(issuer)
    with pytest.raises(MetadataError):
        validate_metadata(document, expected_issuer=issuer)
    assert validate_metadata(document, expected_issuer=issuer, allow_insecure_loopback=True)


def test_it_refuses_http_on_a_public_host_even_when_loopback_is_allowed() -> None:
    issuer = "http://acme-api.bipsync.com"
    with pytest.raises(MetadataError):
        validate_metadata(
            metadata_document(issuer), expected_issuer=issuer, allow_insecure_loopback=True
        )


def test_it_puts_the_well_known_suffix_after_the_api_base() -> None:
    assert metadata_url("https://acme-api.bipsync.com") == (
        "https://acme-api.bipsync.com/.well-known/oauth-authorization-server"
    )


def test_it_discovers_metadata_over_http(
    stub_http: StubHTTPServer, http: HttpClient, issuer: str
) -> None:
    stub_http.route("GET", WELL_KNOWN, StubResponse(body=metadata_document(issuer)))
    metadata = discover(issuer, http, allow_insecure_loopback=True)
    assert metadata.token_endpoint == issuer + "/v1/oauth/token"


def test_it_refuses_to_fetch_an_http_issuer_without_the_flag(
    stub_http: StubHTTPServer, http: HttpClient, issuer: str
) -> None:
    with pytest.raises(MetadataError):
        discover(issuer, http)
    assert stub_http.requests == []


def test_it_caches_metadata_per_issuer_until_the_ttl_passes(
    stub_http: StubHTTPServer, http: HttpClient, issuer: str
) -> None:
    now = [0.0]
    cache = InMemoryMetadataCache(clock=lambda: now[0])
    stub_http.route("GET", WELL_KNOWN, StubResponse(body=metadata_document(issuer)))
    for _ in range(3):
        discover(issuer, http, cache=cache, ttl=60, allow_insecure_loopback=True)
    assert len(stub_http.requests) == 1
    now[0] = 61.0
    discover(issuer, http, cache=cache, ttl=60, allow_insecure_loopback=True)
    assert len(stub_http.requests) == 2


def test_it_does_not_trust_a_cache_entry_for_another_issuer(
    stub_http: StubHTTPServer, http: HttpClient, issuer: str
) -> None:
    cache = InMemoryMetadataCache()
    cache.set(cache_key(issuer), metadata_document("http://127.0.0.1:1/t/evil/api"), 600)
    stub_http.route("GET", WELL_KNOWN, StubResponse(body=metadata_document(issuer)))
    metadata = discover(issuer, http, cache=cache, allow_insecure_loopback=True)
    assert metadata.issuer == issuer
    assert len(stub_http.requests) == 1


class _BrokenCache:
    """Stands for a cache whose backend is down (as Django's Redis cache raises then)."""

    def get(self, key: str, /) -> Any:
        raise ConnectionError("cache down")

    def set(self, key: str, value: Any, timeout: int, /) -> None:
        raise ConnectionError("cache down")


def test_a_failing_cache_does_not_break_discovery(
    stub_http: StubHTTPServer, http: HttpClient, issuer: str
) -> None:
    stub_http.route("GET", WELL_KNOWN, StubResponse(body=metadata_document(issuer)))
    metadata = discover(issuer, http, cache=_BrokenCache(), allow_insecure_loopback=True)
    assert metadata.issuer == issuer


def test_it_does_not_cache_a_failed_discovery(
    stub_http: StubHTTPServer, http: HttpClient, issuer: str
) -> None:
    cache = InMemoryMetadataCache()
    stub_http.route(
        "GET",
        WELL_KNOWN,
        StubResponse(status=503, body="<html>down</html>"),
        StubResponse(body=metadata_document(issuer)),
    )
    with pytest.raises(ProtocolError):
        discover(issuer, http, cache=cache, allow_insecure_loopback=True)
    assert discover(issuer, http, cache=cache, allow_insecure_loopback=True).issuer == issuer


@pytest.mark.parametrize(
    ("response", "exception", "error", "transient"),
    [
        pytest.param(
            StubResponse(body=metadata_document("http://127.0.0.1:1/t/other/api")),
            MetadataError,
            "invalid_issuer",
            False,
            id="wrong-issuer",
        ),
        pytest.param(
            StubResponse(status=404, body="<html>Not found</html>", content_type="text/html"),
            MetadataError,
            "metadata_unavailable",
            False,
            id="unknown-tenant-404",
        ),
        pytest.param(
            StubResponse(status=200, body="<html>Login</html>", content_type="text/html"),
            ProtocolError,
            "invalid_response",
            True,
            id="html-page",
        ),
        pytest.param(StubResponse(body=b""), ProtocolError, "invalid_response", True, id="empty"),
        pytest.param(
            StubResponse(body=[1, 2]), ProtocolError, "invalid_response", True, id="non-object-json"
        ),
        pytest.param(
            StubResponse(status=500, body={"error": "server_error"}),
            ProtocolError,
            "server_error",
            True,
            id="server-error",
        ),
        pytest.param(
            StubResponse(status=429, body="slow down", headers={"Retry-After": "7"}),
            ProtocolError,
            "invalid_response",
            True,
            id="rate-limited",
        ),
        pytest.param(
            StubResponse(status=302, headers={"Location": "https://evil.test/"}),
            TransportError,
            "unexpected_redirect",
            False,
            id="redirect",
        ),
        pytest.param(
            StubResponse(body="x" * 5000), TransportError, "response_too_large", True, id="oversize"
        ),
        pytest.param(
            StubResponse(body="{}", delay=3), TransportError, "timeout", True, id="slow-server"
        ),
    ],
)
def test_it_rejects_bad_metadata_responses(
    stub_http: StubHTTPServer,
    http: HttpClient,
    issuer: str,
    response: StubResponse,
    exception: type[Exception],
    error: str,
    transient: bool,
) -> None:
    stub_http.route("GET", WELL_KNOWN, response)
    with pytest.raises(exception) as raised:
        discover(issuer, http, allow_insecure_loopback=True)
    assert getattr(raised.value, "error", None) == error
    assert getattr(raised.value, "transient", None) is transient


def test_it_reports_retry_after_on_a_rate_limited_discovery(
    stub_http: StubHTTPServer, http: HttpClient, issuer: str
) -> None:
    stub_http.route("GET", WELL_KNOWN, StubResponse(status=429, headers={"Retry-After": "7"}))
    with pytest.raises(ProtocolError) as raised:
        discover(issuer, http, allow_insecure_loopback=True)
    assert raised.value.retry_after == 7.0


@pytest.mark.parametrize("issuer", ["https://exa mple.com", "https://", "https://x:99999"])
def test_it_refuses_an_issuer_that_is_not_a_usable_url(http: HttpClient, issuer: str) -> None:
    with pytest.raises(MetadataError):
        discover(issuer, http)
