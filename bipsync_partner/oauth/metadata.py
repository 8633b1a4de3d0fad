"""Authorization server metadata discovery (RFC 8414), validated and cached per issuer.

The document is fetched from ``{issuer}/.well-known/oauth-authorization-server`` — Bipsync's
documented location, the API base with the well-known suffix appended (for an issuer with a path
RFC 8414 §3.1 would insert the suffix before the path; Bipsync's issuers have none in production
and the sandbox follows Bipsync's form). Validation:

- ``issuer`` must equal the expected issuer exactly, character for character (§3.3): this is what
  stops one tenant's (or an attacker's) metadata being used for another.
- ``authorization_endpoint`` and ``token_endpoint`` must be present (§2); the device and
  revocation endpoints are optional and checked when a grant needs them.
- every endpoint must be https, or http on a loopback host when ``allow_insecure_loopback`` is set
  (Bipsync reference, "Shared conventions"); no fragments.
- if ``code_challenge_methods_supported`` is published it must include ``S256`` (Bipsync enforces
  PKCE with S256).

Validated documents are cached through :class:`MetadataCache` — a two-method protocol that Django's
cache satisfies — under a key derived from the issuer, with a TTL; a failing cache is logged and
bypassed. What is cached is the raw
document; it is re-validated on every read, so a cache shared with other code cannot smuggle in
another issuer's endpoints.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from bipsync_partner.oauth._time import Clock, utc_now
from bipsync_partner.oauth._urls import check_secure_url
from bipsync_partner.oauth.errors import MetadataError, OAuthError
from bipsync_partner.oauth.responses import (
    error_from_response,
    load_json_object,
    parse_retry_after,
)
from bipsync_partner.oauth.transport import HttpClient

WELL_KNOWN_PATH: Final = "/.well-known/oauth-authorization-server"
DEFAULT_METADATA_TTL: Final = 3600
CACHE_KEY_PREFIX: Final = "bipsync-oauth:metadata:v1:"

logger = logging.getLogger(__name__)


class MetadataCache(Protocol):
    """What discovery needs from a cache. ``django.core.cache.cache`` fits as is."""

    def get(self, key: str, /) -> Any: ...

    def set(self, key: str, value: Any, timeout: int, /) -> None: ...


class InMemoryMetadataCache:
    """A small thread-safe TTL cache for use outside Django (CLI, tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Any]] = {}

    def get(self, key: str, /) -> Any:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, value = entry
            if self._clock() >= expires:
                del self._entries[key]
                return None
            return value

    def set(self, key: str, value: Any, timeout: int, /) -> None:
        with self._lock:
            self._entries[key] = (self._clock() + timeout, value)


@dataclass(frozen=True)
class ServerMetadata:
    """The validated subset of RFC 8414 §2 metadata the client uses.

    List-valued members are ``None`` when the server omitted them (so that RFC defaults can be
    applied where they matter), and tuples otherwise.
    """

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    device_authorization_endpoint: str | None = None
    revocation_endpoint: str | None = None
    token_endpoint_auth_methods_supported: tuple[str, ...] | None = None
    revocation_endpoint_auth_methods_supported: tuple[str, ...] | None = None
    grant_types_supported: tuple[str, ...] | None = None
    scopes_supported: tuple[str, ...] | None = None
    code_challenge_methods_supported: tuple[str, ...] | None = None
    #: RFC 9207 §3: the server puts ``iss`` on authorization responses.
    authorization_response_iss_parameter_supported: bool = False

    @property
    def supports_revocation(self) -> bool:
        return self.revocation_endpoint is not None

    @property
    def supports_device_authorization(self) -> bool:
        return self.device_authorization_endpoint is not None


def _cache_get(cache: MetadataCache, key: str) -> Any:
    # The cache is an optimisation: an unreachable Redis must not turn a sign-in into an error
    # page, so cache failures are logged and treated as a miss. The exception type is the
    # backend's (redis, memcached...), which this module cannot know; hence the broad except.
    try:
        return cache.get(key)
    except Exception:
        logger.warning("metadata cache read failed; fetching instead", exc_info=True)
        return None


def _cache_set(cache: MetadataCache, key: str, value: Any, ttl: int) -> None:
    try:
        cache.set(key, value, ttl)
    except Exception:
        logger.warning("metadata cache write failed; continuing without it", exc_info=True)


def metadata_url(issuer: str) -> str:
    """Where ``issuer``'s metadata lives (Bipsync's documented form: suffix appended)."""
    return issuer.rstrip("/") + WELL_KNOWN_PATH


def cache_key(issuer: str) -> str:
    """A cache key safe for any backend (memcached refuses long keys and spaces)."""
    return CACHE_KEY_PREFIX + hashlib.sha256(issuer.encode("utf-8")).hexdigest()


def _string_list(document: Mapping[str, object], key: str) -> tuple[str, ...] | None:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise MetadataError(f"'{key}' must be a JSON array of strings")
    return tuple(value)


def validate_metadata(
    document: Mapping[str, object],
    *,
    expected_issuer: str,
    allow_insecure_loopback: bool = False,
) -> ServerMetadata:
    """Validate a parsed metadata document against ``expected_issuer``; raise ``MetadataError``."""

    def endpoint(key: str) -> str:
        value = document.get(key)
        if value is None:
            raise MetadataError(f"the metadata has no '{key}'")
        return check_secure_url(
            value, what=f"'{key}'", allow_insecure_loopback=allow_insecure_loopback
        )

    def optional_endpoint(key: str) -> str | None:
        return endpoint(key) if document.get(key) is not None else None

    issuer = document.get("issuer")
    # RFC 8414 §3.3: "The issuer value returned MUST be identical to the authorization server's
    # issuer identifier value into which the well-known URI string was inserted".
    if not isinstance(issuer, str) or issuer != expected_issuer:
        raise MetadataError(
            f"the metadata's issuer does not equal the expected issuer {expected_issuer!r}",
            error="invalid_issuer",
        )
    check_secure_url(issuer, what="'issuer'", allow_insecure_loopback=allow_insecure_loopback)
    authorization_endpoint = endpoint("authorization_endpoint")
    token_endpoint = endpoint("token_endpoint")

    challenge_methods = _string_list(document, "code_challenge_methods_supported")
    if challenge_methods is not None and "S256" not in challenge_methods:
        raise MetadataError("the server does not support the S256 PKCE method")
    iss_supported = document.get("authorization_response_iss_parameter_supported", False)
    if not isinstance(iss_supported, bool):
        raise MetadataError("'authorization_response_iss_parameter_supported' must be a boolean")

    return ServerMetadata(
        issuer=issuer,
        authorization_endpoint=authorization_endpoint,
        token_endpoint=token_endpoint,
        device_authorization_endpoint=optional_endpoint("device_authorization_endpoint"),
        revocation_endpoint=optional_endpoint("revocation_endpoint"),
        token_endpoint_auth_methods_supported=_string_list(
            document, "token_endpoint_auth_methods_supported"
        ),
        revocation_endpoint_auth_methods_supported=_string_list(
            document, "revocation_endpoint_auth_methods_supported"
        ),
        grant_types_supported=_string_list(document, "grant_types_supported"),
        scopes_supported=_string_list(document, "scopes_supported"),
        code_challenge_methods_supported=challenge_methods,
        authorization_response_iss_parameter_supported=iss_supported,
    )


def parse_metadata_response(
    status: int,
    body: bytes,
    *,
    expected_issuer: str,
    allow_insecure_loopback: bool = False,
    media_type: str = "",
    retry_after: float | None = None,
) -> tuple[ServerMetadata, dict[str, object]]:
    """Interpret a metadata response: the status first, then the JSON object, then the rules.

    Returns the validated metadata and the raw document (what gets cached). A 5xx/429 is a
    transient ``ProtocolError``; any other non-200 (404: no such tenant) a terminal
    ``MetadataError``.
    """
    if status != 200:
        if status >= 500 or status == 429:
            raise error_from_response(
                status, body, media_type=media_type, retry_after=retry_after, what="metadata"
            )
        raise MetadataError(
            "the metadata endpoint did not answer 200; is the tenant right?",
            error="metadata_unavailable",
            status=status,
        )
    document = load_json_object(body, status=status, media_type=media_type, what="metadata")
    metadata = validate_metadata(
        document,
        expected_issuer=expected_issuer,
        allow_insecure_loopback=allow_insecure_loopback,
    )
    return metadata, document


def discover(
    issuer: str,
    http: HttpClient,
    *,
    cache: MetadataCache | None = None,
    ttl: int = DEFAULT_METADATA_TTL,
    allow_insecure_loopback: bool = False,
    clock: Clock = utc_now,
) -> ServerMetadata:
    """Fetch (or take from ``cache``) and validate the metadata of ``issuer``.

    ``issuer`` is the tenant's API base (``Tenant.issuer``). Raises ``MetadataError`` for an
    invalid document or a non-https issuer, ``ProtocolError`` for a malformed or 5xx/429 answer,
    ``TransportError`` for network trouble (no redirect is followed). ``clock`` only serves to
    turn an HTTP-date ``Retry-After`` into seconds.
    """
    check_secure_url(issuer, what="the issuer", allow_insecure_loopback=allow_insecure_loopback)
    key = cache_key(issuer)
    if cache is not None:
        cached = _cache_get(cache, key)
        if isinstance(cached, dict):
            try:
                return validate_metadata(
                    cached,
                    expected_issuer=issuer,
                    allow_insecure_loopback=allow_insecure_loopback,
                )
            except OAuthError:
                pass  # a stale or foreign entry: fetch afresh and overwrite it
    response = http.request("GET", metadata_url(issuer))
    metadata, document = parse_metadata_response(
        response.status,
        response.body,
        expected_issuer=issuer,
        allow_insecure_loopback=allow_insecure_loopback,
        media_type=response.media_type,
        retry_after=parse_retry_after(response.headers.get("retry-after"), now=clock()),
    )
    if cache is not None:
        _cache_set(cache, key, document, ttl)
    return metadata
