"""The OAuth core's configuration, built from Django settings in one place.

The core (:mod:`bipsync_partner.oauth`) imports no Django; everything it needs is made here:
the host templates, the registered applications (named by the kinds table), the bounded HTTP
client, and the metadata cache (Django's cache, shared by every process, so that discovery happens once per tenant and TTL rather than once per refresh).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import httpx
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured

from bipsync_partner.connections import kinds, tenant_metadata
from bipsync_partner.oauth import (
    ClientConfig,
    GrantClient,
    HostTemplates,
    HttpClient,
    ServerMetadata,
    Tenant,
    TransportSettings,
    create_httpx_client,
    discover,
    resolve_tenant,
)


class ClientNotConfigured(ImproperlyConfigured):
    """A registered application's client id (or secret) is missing from the settings."""


def host_templates() -> HostTemplates:
    return HostTemplates(
        api_base=settings.BIPSYNC_API_BASE_TEMPLATE, web_base=settings.BIPSYNC_WEB_BASE_TEMPLATE
    )


def tenant(slug: str) -> Tenant:
    """Resolve a tenant slug with the configured templates (``ConfigurationError`` if invalid)."""
    return resolve_tenant(slug, host_templates())


def requested_scopes() -> list[str]:
    """The scopes every authorization asks for (the user, service-account and device flows)."""
    return str(settings.BIPSYNC_SCOPES).split()


def allow_insecure_loopback() -> bool:
    return bool(settings.BIPSYNC_ALLOW_INSECURE_LOOPBACK)


def transport_settings() -> TransportSettings:
    timeout = float(settings.BIPSYNC_HTTP_TIMEOUT)
    # The whole exchange may take twice the per-phase timeout; a row lock is held meanwhile
    # during a refresh, so this also bounds how long other processes wait.
    return TransportSettings(timeout=timeout, total_timeout=2 * timeout)


_pooled: dict[tuple[int, TransportSettings], httpx.Client] = {}
_pooled_lock = threading.Lock()


def _pooled_httpx_client(bounds: TransportSettings) -> httpx.Client:
    # One pool of keep-alive connections per process (and per bounds): a refresh then reuses
    # the connection to its tenant instead of opening a new one each time. Keyed by pid so that
    # Celery's prefork children never share sockets with their parent.
    key = (os.getpid(), bounds)
    with _pooled_lock:
        client = _pooled.get(key)
        if client is None:
            client = _pooled[key] = create_httpx_client(bounds)
        return client


def http_client() -> HttpClient:
    """A bounded HTTP client over the process's pooled connections; use it as a context
    manager (closing it leaves the pool open)."""
    bounds = transport_settings()
    return HttpClient(bounds, client=_pooled_httpx_client(bounds))


class _DjangoMetadataCache:
    """Django's cache through the two methods the core's ``MetadataCache`` protocol asks for."""

    def get(self, key: str, /) -> Any:
        return cache.get(key)

    def set(self, key: str, value: Any, timeout: int, /) -> None:
        cache.set(key, value, timeout)


metadata_cache = _DjangoMetadataCache()


#: Validated metadata kept in this process: (issuer, web base, insecure loopback allowed) ->
#: (until, doc).
_held_metadata: dict[tuple[str, str, bool], tuple[float, ServerMetadata]] = {}
#: How long a process keeps validated metadata before asking the shared cache again.
HELD_METADATA_SECONDS = 30.0


def server_metadata(resolved: Tenant, http: HttpClient) -> ServerMetadata:
    """The tenant's validated metadata (RFC 8414), from the shared cache when fresh.

    Its credential endpoints must be on the issuer's host and its authorization endpoint on the
    tenant's web host; a failed refetch falls back to the tenant's last good copy, and refused
    documents and changed endpoints are recorded (:mod:`~bipsync_partner.connections.tenant_metadata`).

    Each process also keeps the validated document for up to 30 s (never past the shared TTL):
    the shared cache costs a Redis round trip, an unpickle and a validation per call, which a
    worker refreshing a tenant's connections one after the other would pay every time.
    """
    ttl = int(settings.BIPSYNC_METADATA_TTL)
    key = (resolved.issuer, resolved.web_base, allow_insecure_loopback())
    now = time.monotonic()
    held = _held_metadata.get(key)
    if held is not None and held[0] > now:
        return held[1]
    metadata = discover(
        resolved.issuer,
        http,
        cache=metadata_cache,
        ttl=ttl,
        allow_insecure_loopback=allow_insecure_loopback(),
        web_base=resolved.web_base,
        last_good=tenant_metadata.last_good,
        on_event=tenant_metadata.record_event,
    )
    _held_metadata[key] = (now + min(float(ttl), HELD_METADATA_SECONDS), metadata)
    return metadata


def client_for(kind: str, *, client_id: str = "", client_secret: str | None = None) -> ClientConfig:
    """The application a connection of ``kind`` talks to Bipsync with, named by the settings in
    the kind's row of :mod:`~bipsync_partner.connections.kinds`.

    Machine (client credentials) connections carry the customer's own application; pass its id
    and decrypted secret.
    """
    row = kinds.spec(kind)
    if row.client_id_setting is None:
        if not client_id or not client_secret:
            raise ClientNotConfigured("a machine connection needs its client id and secret")
        return ClientConfig(client_id, client_secret)
    return _configured_client(row.client_id_setting, row.client_secret_setting, row.purpose)


def _configured_client(id_setting: str, secret_setting: str | None, purpose: str) -> ClientConfig:
    client_id = getattr(settings, id_setting)
    if not client_id:
        raise ClientNotConfigured(
            f"{id_setting} is not set, so {purpose} cannot be used; set it to the client id "
            "Bipsync issued for that application."
        )
    secret = getattr(settings, secret_setting) if secret_setting else None
    if secret_setting and not secret:
        raise ClientNotConfigured(
            f"{secret_setting} is not set; {purpose} use a confidential application and need "
            f"the client secret Bipsync issued with {id_setting}."
        )
    return ClientConfig(client_id, secret)


def grant_client(resolved: Tenant, client: ClientConfig, http: HttpClient) -> GrantClient:
    """A grant client for ``resolved`` with its validated metadata."""
    return GrantClient(
        server_metadata(resolved, http),
        client,
        http,
        allow_insecure_loopback=allow_insecure_loopback(),
    )
