"""The Django layer passes Django's cache to discovery: it must fit the MetadataCache protocol.

This test may import Django (the package under test may not); it uses the project's real cache
(Redis) and the real stub server.
"""

from __future__ import annotations

from django.core.cache import cache as django_cache

from bipsync_partner.oauth import HttpClient, MetadataCache, discover
from bipsync_partner.oauth.metadata import cache_key
from tests.oauth.conftest import metadata_document
from tests.support.stub_http import StubHTTPServer, StubResponse


def test_djangos_cache_serves_as_the_metadata_cache(
    stub_http: StubHTTPServer, http: HttpClient, issuer: str
) -> None:
    cache: MetadataCache = django_cache  # checked by mypy as well
    django_cache.delete(cache_key(issuer))
    stub_http.route(
        "GET",
        "/.well-known/oauth-authorization-server/t/acme/api",  # RFC 8414 §3.1, tried first
        StubResponse(body=metadata_document(issuer)),
    )
    try:
        first = discover(issuer, http, cache=cache, ttl=30, allow_insecure_loopback=True)
        second = discover(issuer, http, cache=cache, ttl=30, allow_insecure_loopback=True)
    finally:
        django_cache.delete(cache_key(issuer))
    assert first == second
    assert len(stub_http.requests) == 1
