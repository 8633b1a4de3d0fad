"""The API client for a connection: tokens from the token service, hosts from the tenant.

Nothing here reads or writes token fields: :mod:`bipsync_partner.connections.tokens` does, under
its row lock. Its errors become the API client's :class:`TokenUnavailable`, transient or not.
"""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

from bipsync_partner.connections import clients, tokens
from bipsync_partner.connections.models import Connection
from bipsync_partner.oauth.errors import ConfigurationError
from bipsync_partner.sync.api import ApiError, BipsyncApi, RetryPolicy, TokenUnavailable


def _unavailable(error: tokens.TokenError) -> TokenUnavailable:
    wait = None
    if error.retry_at is not None:
        wait = max(1.0, (error.retry_at - timezone.now()).total_seconds())
    return TokenUnavailable(
        error.message, code=error.code, transient=error.transient, retry_after=wait
    )


class ConnectionTokens:
    """A :class:`~bipsync_partner.sync.api.TokenSource` for one connection.

    The token the service hands out is kept for the life of this object (one slice of a run)
    until it nears its expiry: asking the service for every page would cost a query and a
    decryption per page. If another process rotates meanwhile, Bipsync revokes the old pair and
    answers 401; :meth:`refresh_after_rejection` then finds the rotated token without a refresh.
    """

    def __init__(self, connection_id: uuid.UUID | str) -> None:
        self.connection = Connection.objects.get(pk=connection_id)
        self._token: str | None = None
        self._good_until: datetime | None = None

    def access_token(self) -> str:
        if self._token is not None and (
            self._good_until is None or timezone.now() < self._good_until
        ):
            return self._token
        try:
            return self._keep(tokens.get_access_token(self.connection))
        except tokens.TokenError as error:
            raise _unavailable(error) from None

    def refresh_after_rejection(self, rejected: str) -> str:
        self._token = None
        try:
            return self._keep(tokens.refresh_after_rejection(self.connection, rejected))
        except tokens.TokenError as error:
            raise _unavailable(error) from None

    def _keep(self, token: str) -> str:
        # The service left self.connection as stored; its expiry tells how long to trust it.
        expires = self.connection.access_expires_at
        self._token = token
        leeway = self.connection.access_leeway(tokens.access_leeway())
        self._good_until = expires - leeway if expires is not None else None
        return token


def retry_policy() -> RetryPolicy:
    return RetryPolicy(
        attempts=settings.SYNC_HTTP_ATTEMPTS,
        backoff_base=settings.SYNC_BACKOFF_BASE_MS / 1000.0,
        backoff_cap=settings.SYNC_BACKOFF_CAP_MS / 1000.0,
        max_inline_wait=float(settings.SYNC_MAX_INLINE_WAIT_SECONDS),
        rate_limit_attempts=settings.SYNC_RATE_LIMIT_ATTEMPTS,
    )


def _check_scheme(api_base: str) -> None:
    # Plain http only for loopback and only when allowed (RFC 6750 §5.3: Bearer tokens
    # must not cross a network in clear text; loopback never leaves the machine).
    parts = urlsplit(api_base)
    if parts.scheme == "https":
        return
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not (loopback and settings.BIPSYNC_ALLOW_INSECURE_LOOPBACK):
        raise ApiError(
            "The tenant's API address is not https; the app refuses to send tokens over it.",
            code="insecure_endpoint",
        )


def api_for(connection: Connection) -> BipsyncApi:
    """A :class:`BipsyncApi` on the connection's tenant with the connection's tokens."""
    try:
        api_base = clients.tenant(connection.tenant).api_base
    except ConfigurationError as exc:
        raise ApiError(
            f"The connection's tenant cannot be used: {exc.description or exc.error}.",
            code="invalid_tenant",
        ) from None
    _check_scheme(api_base)
    return BipsyncApi(
        api_base=api_base,
        tenant=connection.tenant,
        tokens=ConnectionTokens(connection.pk),
        policy=retry_policy(),
        timeout=float(settings.BIPSYNC_HTTP_TIMEOUT),
    )
