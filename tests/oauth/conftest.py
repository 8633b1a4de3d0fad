"""Fixtures for the OAuth core's unit tests: a stub HTTP server, a controllable clock, and
metadata documents pointing at the stub."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bipsync_partner.oauth import HttpClient, ServerMetadata, TransportSettings
from tests.support.stub_http import StubHTTPServer, stub_http

__all__ = ["stub_http"]

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


class FakeClock:
    """A clock whose time moves only when ``sleep`` (or ``advance``) is called."""

    def __init__(self, start: datetime = NOW) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def metadata_document(issuer: str, /, **overrides: Any) -> dict[str, Any]:
    """A valid metadata document for ``issuer``, Bipsync-shaped, with ``overrides`` applied
    (a value of None removes the member)."""
    document: dict[str, Any] = {
        "issuer": issuer,
        "authorization_endpoint": issuer.replace("/api", "/web") + "/oauth/authorize",
        "token_endpoint": issuer + "/v1/oauth/token",
        "device_authorization_endpoint": issuer + "/v1/oauth/device",
        "revocation_endpoint": issuer + "/v1/oauth/revoke",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "client_secret_basic",
            "none",
        ],
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_post",
            "client_secret_basic",
            "none",
        ],
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:device_code",
        ],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
    }
    for key, value in overrides.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    return document


@pytest.fixture
def issuer(stub_http: StubHTTPServer) -> str:
    return stub_http.url + "/t/acme/api"


@pytest.fixture
def metadata(issuer: str) -> ServerMetadata:
    from bipsync_partner.oauth import validate_metadata

    return validate_metadata(
        metadata_document(issuer), expected_issuer=issuer, allow_insecure_loopback=True
    )


@pytest.fixture
def http() -> Iterator[HttpClient]:
    # Short bounds so that the slow-server and oversize tests stay fast.
    with HttpClient(
        TransportSettings(timeout=0.5, total_timeout=2.0, max_response_bytes=4096)
    ) as client:
        yield client
