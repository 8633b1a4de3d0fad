"""Authorization server metadata discovery (RFC 8414), validated and cached per issuer.

Where the document is fetched (RFC 8414 §3.1): for an issuer with a path component the well-known
string is inserted between the host and the path (``https://h/.well-known/oauth-authorization-
server/t/acme/api``); that form is tried first, and when it is not there (a 4xx other than 429)
the form with the suffix appended to the issuer, which is Bipsync's documented location. For an
issuer without a path (Bipsync's production hosts) both forms are the same URL.

Validation:

- ``issuer`` must equal the expected issuer exactly, character for character (§3.3): this is what
  stops one tenant's (or an attacker's) metadata being used for another.
- ``authorization_endpoint`` and ``token_endpoint`` must be present (§2); the device and
  revocation endpoints are optional and checked when a grant needs them.
- every endpoint must be https, or http on a loopback host when ``allow_insecure_loopback`` is set
  (Bipsync reference, "Shared conventions"); no fragments.
- the endpoints that receive the client's credentials (token, device authorization, revocation)
  must be on the issuer's own scheme, host and port. The partner's client id and secret are the
  same for every customer: a document that named another host would have them, the code and the
  PKCE verifier posted there. The authorization endpoint (which only sees the browser) must be on
  the tenant's web host as built from the host template, or on the issuer's when no web host is
  given.
- if ``code_challenge_methods_supported`` is published it must include ``S256`` (Bipsync enforces
  PKCE with S256).

A fetched document that fails validation is a security event: it is logged on the
``bipsync_partner.security`` logger and reported to ``on_event``.

Validated documents are cached through :class:`MetadataCache` — a two-method protocol that Django's
cache satisfies — under a key derived from the issuer, with a TTL; a failing cache is logged and
bypassed. What is cached is the raw document; it is re-validated on every read, so a cache shared
with other code cannot smuggle in another issuer's endpoints.

Beside the cache, a :class:`LastGoodMetadataStore` keeps the last document that passed validation
for each issuer, without expiry. When a refetch fails (network, 5xx, 404, an invalid document),
discovery answers with it instead of failing; when a refetched document names other endpoints than
the last good one, the change is logged and reported to ``on_event`` before it is followed.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from bipsync_partner.oauth._time import Clock, utc_now
from bipsync_partner.oauth._urls import check_secure_url, origin, same_origin
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

#: The members that name endpoints, compared to tell a change of endpoints.
ENDPOINT_MEMBERS: Final = (
    "authorization_endpoint",
    "token_endpoint",
    "device_authorization_endpoint",
    "revocation_endpoint",
)

logger = logging.getLogger(__name__)
#: Refused metadata goes here too, so that operators can route security events on their own.
security_logger = logging.getLogger("bipsync_partner.security")

MetadataEventKind = Literal["refused", "used_last_good", "endpoints_changed"]


@dataclass(frozen=True)
class MetadataEvent:
    """Something operators must hear about an issuer's metadata.

    ``refused``: a fetched document failed validation (a misconfiguration or an attack).
    ``used_last_good``: a refetch failed and the last good document was used instead.
    ``endpoints_changed``: a refetched document names other endpoints than the last good one
    (``changed`` lists the members); the new ones are used from now on.
    ``detail`` is a sentence without secrets (metadata holds none).
    """

    kind: MetadataEventKind
    issuer: str
    detail: str
    changed: tuple[str, ...] = ()


class LastGoodMetadataStore(Protocol):
    """Durable storage of the last document that passed validation, per issuer."""

    def load(self, issuer: str, /) -> Mapping[str, object] | None:
        """The last good document of ``issuer``, or None."""
        ...

    def remember(
        self, issuer: str, document: Mapping[str, object], /
    ) -> Mapping[str, object] | None:
        """Keep ``document`` as the last good one; return the one it replaces (None if none).

        Two processes remembering the same new document at once must not both be told the old
        one (the change would be reported twice)."""
        ...


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


def metadata_urls(issuer: str) -> tuple[str, ...]:
    """Where ``issuer``'s metadata may live, in the order to try: RFC 8414 §3.1's form (the
    well-known string inserted between host and path), then the suffix appended to the issuer
    (Bipsync's documented form). One URL when the issuer has no path."""
    appended = issuer.rstrip("/") + WELL_KNOWN_PATH
    parts = urlsplit(issuer)
    # §3.1: "any terminating "/" MUST be removed before inserting".
    path = parts.path.rstrip("/")
    if not path:
        return (appended,)
    inserted = urlunsplit((parts.scheme, parts.netloc, WELL_KNOWN_PATH + path, "", ""))
    return (inserted, appended)


def metadata_url(issuer: str) -> str:
    """The first place ``issuer``'s metadata is looked for (see :func:`metadata_urls`)."""
    return metadata_urls(issuer)[0]


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


def _describe_origin(url: str) -> str:
    scheme, host, port = origin(url)
    return f"{scheme}://{host}:{port}"


def _check_hosts(
    issuer: str,
    authorization_endpoint: str,
    credential_endpoints: Mapping[str, str | None],
    *,
    web_base: str | None,
    allow_insecure_loopback: bool,
) -> None:
    """Credential endpoints on the issuer's origin; the authorization endpoint on the web
    base's (the issuer's without one). See the module docstring for why."""
    for key, value in credential_endpoints.items():
        if value is not None and not same_origin(value, issuer):
            raise MetadataError(
                f"'{key}' is on {_describe_origin(value)}, not on the issuer's "
                f"{_describe_origin(issuer)}; endpoints that receive the client's credentials "
                "must be on the issuer's own scheme, host and port"
            )
    home = (
        check_secure_url(
            web_base, what="the web base", allow_insecure_loopback=allow_insecure_loopback
        )
        if web_base is not None
        else issuer
    )
    if not same_origin(authorization_endpoint, home):
        raise MetadataError(
            f"'authorization_endpoint' is on {_describe_origin(authorization_endpoint)}, not on "
            f"the tenant's {'web host' if web_base is not None else 'issuer host'} "
            f"{_describe_origin(home)}"
        )


def validate_metadata(
    document: Mapping[str, object],
    *,
    expected_issuer: str,
    allow_insecure_loopback: bool = False,
    web_base: str | None = None,
) -> ServerMetadata:
    """Validate a parsed metadata document against ``expected_issuer``; raise ``MetadataError``.

    ``web_base`` is the tenant's web host as built from its template: the only place the
    authorization endpoint may be (the issuer's host when it is not given).
    """

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
    device_endpoint = optional_endpoint("device_authorization_endpoint")
    revocation_endpoint = optional_endpoint("revocation_endpoint")
    _check_hosts(
        issuer,
        authorization_endpoint,
        {
            "token_endpoint": token_endpoint,
            "device_authorization_endpoint": device_endpoint,
            "revocation_endpoint": revocation_endpoint,
        },
        web_base=web_base,
        allow_insecure_loopback=allow_insecure_loopback,
    )
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
        device_authorization_endpoint=device_endpoint,
        revocation_endpoint=revocation_endpoint,
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
    web_base: str | None = None,
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
        web_base=web_base,
    )
    return metadata, document


def _fetch(
    issuer: str,
    http: HttpClient,
    *,
    allow_insecure_loopback: bool,
    web_base: str | None,
    clock: Clock,
) -> tuple[ServerMetadata, dict[str, object]]:
    """Fetch and validate, trying each of :func:`metadata_urls` while the previous one is not
    there (a terminal non-200, e.g. 404). A transient answer or an invalid document stops the
    search: the next form would not make either trustworthy."""
    urls = metadata_urls(issuer)
    for index, url in enumerate(urls):
        response = http.request("GET", url)
        try:
            return parse_metadata_response(
                response.status,
                response.body,
                expected_issuer=issuer,
                allow_insecure_loopback=allow_insecure_loopback,
                media_type=response.media_type,
                retry_after=parse_retry_after(response.headers.get("retry-after"), now=clock()),
                web_base=web_base,
            )
        except MetadataError as exc:
            if exc.error != "metadata_unavailable" or index == len(urls) - 1:
                raise
    raise AssertionError("unreachable: metadata_urls returns at least one URL")


def _report(on_event: Callable[[MetadataEvent], None] | None, event: MetadataEvent) -> None:
    # Whoever listens (a database, metrics) must not turn discovery into an error.
    if on_event is None:
        return
    try:
        on_event(event)
    except Exception:
        logger.warning("recording a metadata event failed", exc_info=True)


def _load_last_good(
    store: LastGoodMetadataStore,
    issuer: str,
    validate: Callable[[Mapping[str, object]], ServerMetadata],
) -> ServerMetadata | None:
    try:
        document = store.load(issuer)
    except Exception:  # the store's backend (a database) is not known here
        logger.warning("reading the last good metadata of %s failed", issuer, exc_info=True)
        return None
    if document is None:
        return None
    try:
        return validate(document)
    except OAuthError as exc:
        # Kept by an older, laxer version, or tampered with: never used.
        logger.warning("the last good metadata of %s is not valid (%s)", issuer, exc.error)
        return None


def _remember(
    store: LastGoodMetadataStore, issuer: str, document: dict[str, object]
) -> Mapping[str, object] | None:
    try:
        return store.remember(issuer, document)
    except Exception:
        logger.warning("keeping the last good metadata of %s failed", issuer, exc_info=True)
        return None


def changed_endpoints(
    previous: Mapping[str, object] | None, document: Mapping[str, object]
) -> tuple[str, ...]:
    """The endpoint members whose value differs between two documents (none without a previous
    one: a first fetch changes nothing)."""
    if previous is None:
        return ()
    return tuple(key for key in ENDPOINT_MEMBERS if previous.get(key) != document.get(key))


def _after_failed_fetch(
    exc: OAuthError,
    issuer: str,
    last_good: LastGoodMetadataStore | None,
    on_event: Callable[[MetadataEvent], None] | None,
    validate: Callable[[Mapping[str, object]], ServerMetadata],
) -> ServerMetadata | None:
    """Report a refused document; return the last good copy to use instead, if there is one."""
    if isinstance(exc, MetadataError) and exc.error != "metadata_unavailable":
        security_logger.error(
            "security event: refused the metadata of %s before any request to its endpoints: %s",
            issuer,
            exc,
        )
        _report(on_event, MetadataEvent("refused", issuer, str(exc)))
    fallback = _load_last_good(last_good, issuer, validate) if last_good is not None else None
    if fallback is not None:
        logger.warning(
            "refetching the metadata of %s failed (%s); using the last good copy", issuer, exc.error
        )
        _report(
            on_event,
            MetadataEvent(
                "used_last_good",
                issuer,
                f"refetching the metadata failed ({exc.error}); the last good copy was used",
            ),
        )
    return fallback


def _note_changes(
    previous: Mapping[str, object] | None,
    document: Mapping[str, object],
    issuer: str,
    on_event: Callable[[MetadataEvent], None] | None,
) -> None:
    """Say so when ``document`` names other endpoints than the last good one: they are followed
    (they passed the same rules), but never silently."""
    changed = changed_endpoints(previous, document)
    if not changed:
        return
    detail = "the metadata names new endpoints: " + ", ".join(
        f"{name} {document.get(name) or '(none)'}" for name in changed
    )
    logger.warning("the metadata of %s changed: %s", issuer, detail)
    _report(on_event, MetadataEvent("endpoints_changed", issuer, detail, changed))


def discover(
    issuer: str,
    http: HttpClient,
    *,
    cache: MetadataCache | None = None,
    ttl: int = DEFAULT_METADATA_TTL,
    allow_insecure_loopback: bool = False,
    clock: Clock = utc_now,
    web_base: str | None = None,
    last_good: LastGoodMetadataStore | None = None,
    on_event: Callable[[MetadataEvent], None] | None = None,
) -> ServerMetadata:
    """Fetch (or take from ``cache``) and validate the metadata of ``issuer``.

    ``issuer`` is the tenant's API base (``Tenant.issuer``), ``web_base`` its web base
    (``Tenant.web_base``, where the authorization endpoint must be). Raises ``MetadataError`` for
    an invalid document or a non-https issuer, ``ProtocolError`` for a malformed or 5xx/429
    answer, ``TransportError`` for network trouble (no redirect is followed) — unless
    ``last_good`` holds a valid document for the issuer, which is then returned instead.
    ``on_event`` hears of refused documents, of the last good one being used and of changed
    endpoints (:class:`MetadataEvent`). ``clock`` only serves to turn an HTTP-date
    ``Retry-After`` into seconds.
    """
    check_secure_url(issuer, what="the issuer", allow_insecure_loopback=allow_insecure_loopback)

    def validate(document: Mapping[str, object]) -> ServerMetadata:
        return validate_metadata(
            document,
            expected_issuer=issuer,
            allow_insecure_loopback=allow_insecure_loopback,
            web_base=web_base,
        )

    key = cache_key(issuer)
    if cache is not None:
        cached = _cache_get(cache, key)
        if isinstance(cached, dict):
            try:
                return validate(cached)
            except OAuthError:
                pass  # a stale or foreign entry: fetch afresh and overwrite it
    try:
        metadata, document = _fetch(
            issuer,
            http,
            allow_insecure_loopback=allow_insecure_loopback,
            web_base=web_base,
            clock=clock,
        )
    except OAuthError as exc:
        fallback = _after_failed_fetch(exc, issuer, last_good, on_event, validate)
        if fallback is None:
            raise
        return fallback
    if last_good is not None:
        _note_changes(_remember(last_good, issuer, document), document, issuer, on_event)
    if cache is not None:
        _cache_set(cache, key, document, ttl)
    return metadata
