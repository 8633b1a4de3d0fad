"""Authorization requests: PKCE, state, exact redirect URI, the service-account selector."""

from __future__ import annotations

import math
from urllib.parse import parse_qs, urlsplit

import pytest

from bipsync_partner.oauth import (
    AuthorizationClients,
    CallbackError,
    ClientConfig,
    ConfigurationError,
    PendingAuthorization,
    ServerMetadata,
    s256_code_challenge,
    start_authorization,
    validate_metadata,
)
from tests.oauth.conftest import NOW, metadata_document

REDIRECT = "https://partner.example/connections/callback"
USER = ClientConfig("user-client", "user-secret")
SERVICE = ClientConfig("service-client", "service-secret")


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def test_it_builds_an_authorization_url_with_pkce_and_state(metadata: ServerMetadata) -> None:
    url, pending = start_authorization(
        metadata, USER, redirect_uri=REDIRECT, scopes=["rest_api:read", "research:read"], now=NOW
    )
    assert url.startswith(metadata.authorization_endpoint + "?")
    query = _query(url)
    assert query == {
        "response_type": ["code"],
        "client_id": ["user-client"],
        "redirect_uri": [REDIRECT],
        "scope": ["rest_api:read research:read"],
        "state": [pending.state],
        "code_challenge": [s256_code_challenge(pending.code_verifier)],
        "code_challenge_method": ["S256"],
    }
    assert 43 <= len(pending.code_verifier) <= 128
    assert pending.code_verifier not in url
    assert pending.redirect_uri == REDIRECT
    assert pending.scopes == ("rest_api:read", "research:read")
    assert pending.kind == "user"
    assert pending.created_at == NOW
    assert pending.issuer == metadata.issuer
    assert pending.token_endpoint == metadata.token_endpoint
    assert pending.iss_parameter_supported


def test_its_state_carries_at_least_128_bits(metadata: ServerMetadata) -> None:
    states = {
        start_authorization(metadata, USER, redirect_uri=REDIRECT, scopes="a", now=NOW)[1].state
        for _ in range(20)
    }
    assert len(states) == 20
    assert all(len(s) * math.log2(62) >= 128 for s in states)


def test_it_keeps_an_existing_query_on_the_authorization_endpoint() -> None:
    issuer = "https://acme-api.bipsync.com"
    metadata = validate_metadata(
        metadata_document(issuer, authorization_endpoint="https://acme.bipsync.com/authz?tenant=1"),
        expected_issuer=issuer,
        web_base="https://acme.bipsync.com",
    )
    url, _ = start_authorization(metadata, USER, redirect_uri=REDIRECT, scopes="a", now=NOW)
    assert _query(url)["tenant"] == ["1"]


def test_the_service_account_kind_uses_the_separate_client_by_default(
    metadata: ServerMetadata,
) -> None:
    clients = AuthorizationClients(user=USER, service_account=SERVICE)
    url, pending = start_authorization(
        metadata, clients, redirect_uri=REDIRECT, scopes="a", now=NOW, kind="service_account"
    )
    assert _query(url)["client_id"] == ["service-client"]
    assert pending.client_id == "service-client"
    assert pending.kind == "service_account"
    assert clients.client_for(pending.kind) is SERVICE


def test_the_service_account_kind_can_be_selected_by_authorize_parameters(
    metadata: ServerMetadata,
) -> None:
    clients = AuthorizationClients(
        user=USER,
        service_account_mode="authorize_parameters",
        service_account_parameters={"account_type": "service_account"},
    )
    url, _ = start_authorization(
        metadata, clients, redirect_uri=REDIRECT, scopes="a", now=NOW, kind="service_account"
    )
    query = _query(url)
    assert query["client_id"] == ["user-client"]
    assert query["account_type"] == ["service_account"]
    user_url, _ = start_authorization(metadata, clients, redirect_uri=REDIRECT, scopes="a", now=NOW)
    assert "account_type" not in _query(user_url)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(
            lambda: AuthorizationClients(user=USER).client_for("service_account"),
            id="no-service-client",
        ),
        pytest.param(
            lambda: AuthorizationClients(user=USER, service_account_mode="authorize_parameters"),
            id="mode-without-parameters",
        ),
        pytest.param(
            lambda: AuthorizationClients(user=USER, service_account_parameters={"state": "x"}),
            id="parameter-overrides-state",
        ),
        pytest.param(
            lambda: AuthorizationClients(user=USER, service_account_mode="magic"),  # type: ignore[arg-type]
            id="unknown-mode",
        ),
    ],
)
def test_it_rejects_an_unusable_service_account_configuration(build: object) -> None:
    with pytest.raises(ConfigurationError):
        build()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("redirect_uri", "scopes", "extra"),
    [
        pytest.param("/callback", "a", None, id="relative-redirect"),
        pytest.param("http://partner.example/cb", "a", None, id="http-redirect-public-host"),
        pytest.param(REDIRECT + "#x", "a", None, id="redirect-with-fragment"),
        pytest.param(REDIRECT, [], None, id="no-scope"),
        pytest.param(REDIRECT, ['bad"scope'], None, id="scope-with-quote"),
        pytest.param(REDIRECT, ["two words"], None, id="scope-with-space"),
        pytest.param(REDIRECT, "a", {"code_challenge_method": "plain"}, id="override-pkce"),
        pytest.param(REDIRECT, "a", {"redirect_uri": "https://evil.test"}, id="override-redirect"),
    ],
)
def test_it_rejects_bad_authorization_inputs(
    metadata: ServerMetadata, redirect_uri: str, scopes: object, extra: dict[str, str] | None
) -> None:
    with pytest.raises(ConfigurationError):
        start_authorization(
            metadata,
            USER,
            redirect_uri=redirect_uri,
            scopes=scopes,  # type: ignore[arg-type]
            now=NOW,
            extra_parameters=extra,
        )


def test_it_allows_an_http_redirect_uri_on_loopback(metadata: ServerMetadata) -> None:
    url, _ = start_authorization(
        metadata, USER, redirect_uri="http://127.0.0.1:8000/cb", scopes="a", now=NOW
    )
    assert _query(url)["redirect_uri"] == ["http://127.0.0.1:8000/cb"]


def test_the_pending_authorization_round_trips_through_a_dict(metadata: ServerMetadata) -> None:
    _, pending = start_authorization(metadata, USER, redirect_uri=REDIRECT, scopes="a b", now=NOW)
    assert PendingAuthorization.from_dict(pending.to_dict()) == pending


def test_the_pending_authorization_hides_its_secrets_in_repr(metadata: ServerMetadata) -> None:
    _, pending = start_authorization(metadata, USER, redirect_uri=REDIRECT, scopes="a", now=NOW)
    assert pending.code_verifier not in repr(pending)
    assert pending.state not in repr(pending)
    assert pending.code_verifier not in str(pending)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("code_verifier", "short", id="short-verifier"),
        pytest.param("state", "abc", id="weak-state"),
        pytest.param("kind", "admin", id="unknown-kind"),
        pytest.param("scopes", "a b", id="scopes-not-list"),
        pytest.param("created_at", "yesterday", id="bad-date"),
        pytest.param("created_at", "2025-01-01T00:00:00", id="naive-date"),
        pytest.param("iss_parameter_supported", "yes", id="flag-not-bool"),
        pytest.param("issuer", None, id="missing-issuer"),
    ],
)
def test_it_refuses_a_tampered_stored_authorization(
    metadata: ServerMetadata, key: str, value: object
) -> None:
    _, pending = start_authorization(metadata, USER, redirect_uri=REDIRECT, scopes="a", now=NOW)
    data = pending.to_dict()
    data[key] = value
    with pytest.raises(CallbackError) as raised:
        PendingAuthorization.from_dict(data)
    assert raised.value.error == "invalid_pending"
