"""The grants Bipsync supports, against one tenant's validated metadata.

:class:`GrantClient` binds a tenant's :class:`~bipsync_partner.oauth.metadata.ServerMetadata`, one
:class:`~bipsync_partner.oauth.clients.ClientConfig` and an
:class:`~bipsync_partner.oauth.transport.HttpClient`, and offers:

- :meth:`~GrantClient.exchange_code`: authorization code + PKCE verifier (RFC 6749 §4.1.3,
  RFC 7636 §4.5);
- :meth:`~GrantClient.refresh`: RFC 6749 §6. Bipsync rotates refresh tokens on every use [doc]; the
  old one is kept only when the response carries none (RFC 6749 §6 allows that);
- :meth:`~GrantClient.client_credentials`: RFC 6749 §4.4 with Bipsync's ``team_{id}`` scope; a
  refresh token in its answer is ignored (§4.4.3);
- :meth:`~GrantClient.start_device_authorization`, :meth:`~GrantClient.poll_device_token` and
  :meth:`~GrantClient.wait_for_device_token`: RFC 8628 §3.1-§3.5;
- :meth:`~GrantClient.revoke`: RFC 7009, when the metadata advertises a revocation endpoint.

Client authentication is chosen per endpoint by
:func:`~bipsync_partner.oauth.clients.choose_auth_method`. Token responses go through
:func:`~bipsync_partner.oauth.tokens.parse_token_response`. authlib's ``OAuth2Client`` is not used
here on purpose: its response handling is lenient (it accepts any JSON and leaves validation to
the caller), and every rule above must be ours and explicit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal, NoReturn

from bipsync_partner.oauth._time import Clock, utc_now
from bipsync_partner.oauth._urls import check_secure_url, same_origin
from bipsync_partner.oauth.authorization import PendingAuthorization
from bipsync_partner.oauth.callback import CallbackSuccess
from bipsync_partner.oauth.clients import ClientConfig, apply_client_auth, choose_auth_method
from bipsync_partner.oauth.errors import (
    ConfigurationError,
    DeviceFlowError,
    MetadataError,
    OAuthError,
    ProtocolError,
)
from bipsync_partner.oauth.metadata import ServerMetadata
from bipsync_partner.oauth.responses import (
    error_from_response,
    load_json_object,
    parse_retry_after,
)
from bipsync_partner.oauth.scopes import join_scopes, normalize_scopes, team_scope
from bipsync_partner.oauth.tokens import Token, parse_expires_in, parse_token_response
from bipsync_partner.oauth.transport import HttpClient, HttpResponse

DEVICE_CODE_GRANT_TYPE: Final = "urn:ietf:params:oauth:grant-type:device_code"
#: RFC 8628 §3.2: "If no value is provided, clients MUST use 5 as the default" (Bipsync sends none).
DEFAULT_DEVICE_INTERVAL: Final = 5
#: RFC 8628 §3.5: on slow_down "the interval MUST be increased by 5 seconds".
SLOW_DOWN_INCREMENT: Final = 5

TokenTypeHint = Literal["access_token", "refresh_token"]


@dataclass(frozen=True, repr=False)
class DeviceAuthorization:
    """A device authorization response (RFC 8628 §3.2). ``device_code`` is secret and kept out
    of the repr; ``user_code`` and the URIs are meant to be shown to the user."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_at: datetime
    interval: int
    scopes: tuple[str, ...]
    received_at: datetime

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def __repr__(self) -> str:
        return (
            f"DeviceAuthorization(user_code={self.user_code!r}, "
            f"verification_uri={self.verification_uri!r}, "
            f"expires_at={self.expires_at.isoformat()!r}, interval={self.interval!r})"
        )


@dataclass(frozen=True)
class DevicePollAttempt:
    """Reported to ``on_poll`` after each unsuccessful poll: the error code the poll produced
    (``authorization_pending``, ``slow_down``, or a transient one such as ``timeout``) and the
    interval, in seconds, before the next one."""

    outcome: str
    next_interval: float


def _unsupported(what: str) -> NoReturn:
    raise ConfigurationError(
        f"the server's metadata does not advertise a {what}", error="unsupported_endpoint"
    )


class GrantClient:
    """Token-endpoint operations for one tenant and one registered client.

    Args:
        metadata: the tenant's validated metadata (:func:`~bipsync_partner.oauth.discover`).
        client: the application's credentials.
        http: the bounded HTTP client; the caller owns and closes it.
        clock: returns "now" as an aware datetime; receive times and deadlines come from it.
        allow_insecure_loopback: accept http verification URIs on loopback (sandbox only).
    """

    def __init__(
        self,
        metadata: ServerMetadata,
        client: ClientConfig,
        http: HttpClient,
        *,
        clock: Clock = utc_now,
        allow_insecure_loopback: bool = False,
    ) -> None:
        self.metadata = metadata
        self.client = client
        self.http = http
        self.clock = clock
        self.allow_insecure_loopback = allow_insecure_loopback

    def __repr__(self) -> str:
        return f"GrantClient(issuer={self.metadata.issuer!r}, client_id={self.client.client_id!r})"

    # --- plumbing ------------------------------------------------------------------------------

    def _post(
        self,
        url: str,
        form: Mapping[str, str],
        auth_methods_supported: tuple[str, ...] | None,
    ) -> tuple[HttpResponse, datetime]:
        method = choose_auth_method(self.client, auth_methods_supported)
        body = dict(form)
        headers: dict[str, str] = {}
        apply_client_auth(method, self.client, body, headers)
        response = self.http.request("POST", url, data=body, headers=headers)
        return response, self.clock()

    def _token_request(
        self,
        form: Mapping[str, str],
        requested_scopes: Iterable[str],
        *,
        endpoint: str | None = None,
    ) -> Token:
        response, received_at = self._post(
            endpoint or self.metadata.token_endpoint,
            form,
            self.metadata.token_endpoint_auth_methods_supported,
        )
        return parse_token_response(
            response.status,
            response.body,
            received_at=received_at,
            requested_scopes=requested_scopes,
            media_type=response.media_type,
            retry_after=parse_retry_after(response.headers.get("retry-after"), now=received_at),
        )

    # --- grants --------------------------------------------------------------------------------

    def exchange_code(self, pending: PendingAuthorization, callback: CallbackSuccess) -> Token:
        """Exchange a validated callback's code, with the pending authorization's verifier and
        exact redirect URI (RFC 6749 §4.1.3, RFC 7636 §4.5), at the token endpoint pinned when the
        flow started: metadata fetched since (which may name other endpoints) does not decide
        where the code and verifier go."""
        if pending.issuer != self.metadata.issuer:
            raise ConfigurationError("the pending authorization belongs to another issuer")
        if pending.client_id != self.client.client_id:
            raise ConfigurationError(
                "the pending authorization was started with another client; use the client "
                "configured for its kind"
            )
        endpoint = check_secure_url(
            pending.token_endpoint,
            what="the pinned token endpoint",
            allow_insecure_loopback=self.allow_insecure_loopback,
        )
        # A row stored before endpoints were held to the issuer's host must not slip through.
        if not same_origin(endpoint, pending.issuer):
            raise MetadataError(
                "the pinned token endpoint is not on the issuer's scheme, host and port"
            )
        return self._token_request(
            {
                "grant_type": "authorization_code",
                "code": callback.code,
                "redirect_uri": pending.redirect_uri,
                "code_verifier": pending.code_verifier,
            },
            pending.scopes,
            endpoint=endpoint,
        )

    def refresh(
        self,
        refresh_token: str,
        *,
        scopes: Iterable[str] | None = None,
        previous_scopes: Iterable[str] = (),
    ) -> Token:
        """Use ``refresh_token`` (RFC 6749 §6). ``scopes`` narrows the grant (Bipsync answers
        ``invalid_scope`` for more than was consented); when the response names no scope, the
        granted scope is ``scopes`` if given, else ``previous_scopes``. A rotated refresh token in
        the response replaces the old one; the old one is kept only when none is returned.

        A reused, rotated refresh token raises ``ProtocolError`` with ``error="invalid_grant"``
        (terminal): the connection must be authorized again.
        """
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        requested = normalize_scopes(scopes) if scopes is not None else None
        if requested is not None:
            form["scope"] = join_scopes(requested)
        token = self._token_request(
            form, requested if requested is not None else tuple(previous_scopes)
        )
        if token.refresh_token is None:
            token = token.with_refresh_token(refresh_token)
        return token

    def client_credentials(self, team_id: str, scopes: Iterable[str] = ()) -> Token:
        """A team-wide token for the customer's own machine-to-machine jobs (RFC 6749 §4.4).
        The ``scope`` always includes ``team_{team_id}`` (Bipsync reference, "Grants")."""
        requested = normalize_scopes([team_scope(team_id), *scopes])
        token = self._token_request(
            {"grant_type": "client_credentials", "scope": join_scopes(requested)}, requested
        )
        # RFC 6749 §4.4.3: "A refresh token SHOULD NOT be included"; one that is included is
        # ignored: the client acquires a new token with its credentials instead.
        return token.with_refresh_token(None)

    # --- device authorization (RFC 8628) ---------------------------------------------------------

    def start_device_authorization(self, scopes: Iterable[str] | str) -> DeviceAuthorization:
        """Ask for a device and user code (RFC 8628 §3.1/§3.2)."""
        endpoint = self.metadata.device_authorization_endpoint
        if endpoint is None:
            _unsupported("device authorization endpoint")
        requested = normalize_scopes(scopes)
        response, received_at = self._post(
            endpoint,
            {"scope": join_scopes(requested)},
            self.metadata.token_endpoint_auth_methods_supported,
        )
        retry_after = parse_retry_after(response.headers.get("retry-after"), now=received_at)
        if response.status != 200:
            raise error_from_response(
                response.status,
                response.body,
                media_type=response.media_type,
                retry_after=retry_after,
                what="device authorization response",
            )
        document = load_json_object(
            response.body,
            status=response.status,
            media_type=response.media_type,
            what="device authorization response",
        )
        return self._parse_device_authorization(document, requested, received_at)

    def _parse_device_authorization(
        self,
        document: Mapping[str, object],
        requested: tuple[str, ...],
        received_at: datetime,
    ) -> DeviceAuthorization:
        def malformed(reason: str) -> NoReturn:
            raise ProtocolError(
                f"the device authorization response is malformed: {reason}",
                error="invalid_response",
                status=200,
                transient=True,
            )

        def text(key: str) -> str:
            value = document.get(key)
            if not isinstance(value, str) or not value or not value.isprintable():
                malformed(f"{key} is missing or not a string")
            return value

        device_code = text("device_code")
        user_code = text("user_code")
        try:
            verification_uri = check_secure_url(
                text("verification_uri"),
                what="verification_uri",
                allow_insecure_loopback=self.allow_insecure_loopback,
                error=ProtocolError,
            )
            complete = document.get("verification_uri_complete")
            verification_uri_complete = (
                check_secure_url(
                    complete,
                    what="verification_uri_complete",
                    allow_insecure_loopback=self.allow_insecure_loopback,
                    error=ProtocolError,
                )
                if complete is not None
                else None
            )
        except ProtocolError as exc:
            malformed(exc.description or "bad verification URI")
        try:
            expires_in = parse_expires_in(document.get("expires_in"))
            interval = parse_expires_in(document.get("interval"))
        except ValueError:
            malformed("expires_in or interval is not a non-negative integer")
        if expires_in is None:
            malformed("expires_in is missing")  # REQUIRED by RFC 8628 §3.2
        return DeviceAuthorization(
            device_code=device_code,
            user_code=user_code,
            verification_uri=verification_uri,
            verification_uri_complete=verification_uri_complete,
            expires_at=received_at + timedelta(seconds=expires_in),
            # An interval of 0 would mean hammering the server; 1 s is the floor.
            interval=max(interval, 1) if interval is not None else DEFAULT_DEVICE_INTERVAL,
            scopes=requested,
            received_at=received_at,
        )

    def poll_device_token(self, device: DeviceAuthorization) -> Token:
        """One token request for ``device`` (RFC 8628 §3.4). While the user has not decided this
        raises ``ProtocolError`` with ``error`` ``authorization_pending`` or ``slow_down``
        (transient); then ``access_denied`` or ``expired_token`` (terminal), or returns the token.
        """
        return self._token_request(
            {"grant_type": DEVICE_CODE_GRANT_TYPE, "device_code": device.device_code},
            device.scopes,
        )

    def wait_for_device_token(
        self,
        device: DeviceAuthorization,
        *,
        cancel: threading.Event | Callable[[], bool] | None = None,
        sleep: Callable[[float], None] | None = None,
        on_poll: Callable[[DevicePollAttempt], None] | None = None,
    ) -> Token:
        """Poll until the user approves, honouring RFC 8628 §3.5.

        Waits ``device.interval`` seconds before each poll; ``slow_down`` adds 5 s to the
        interval for good; a transient failure (timeout, network, 5xx) doubles it (RFC 8628 §3.5
        asks for exponential back-off on connection timeouts). Stops with

        - the token;
        - ``ProtocolError`` ``access_denied`` / ``expired_token`` (or any other terminal error)
          from the server;
        - ``DeviceFlowError`` ``expired_token`` when ``expires_in`` passes on our clock;
        - ``DeviceFlowError`` ``cancelled`` as soon as ``cancel`` is set / returns True.

        ``sleep`` defaults to waiting on ``cancel`` when it is an Event (so cancelling wakes the
        poller at once) and ``time.sleep`` otherwise; tests pass a fake that advances their clock.
        """

        def cancelled() -> bool:
            if cancel is None:
                return False
            if isinstance(cancel, threading.Event):
                return cancel.is_set()
            return bool(cancel())

        def pause(seconds: float) -> None:
            if sleep is not None:
                sleep(seconds)
            elif isinstance(cancel, threading.Event):
                cancel.wait(seconds)
            else:
                time.sleep(seconds)

        def check_cancel() -> None:
            if cancelled():
                raise DeviceFlowError("the device authorization was cancelled", error="cancelled")

        def check_deadline() -> float:
            remaining = (device.expires_at - self.clock()).total_seconds()
            if remaining <= 0:
                raise DeviceFlowError(
                    "the user code expired before it was approved", error="expired_token"
                )
            return remaining

        interval = float(device.interval)
        while True:
            check_cancel()
            remaining = check_deadline()
            pause(min(interval, remaining))
            check_cancel()
            check_deadline()
            try:
                return self.poll_device_token(device)
            except OAuthError as exc:
                if exc.error == "authorization_pending":
                    pass
                elif exc.error == "slow_down":
                    interval += SLOW_DOWN_INCREMENT
                elif exc.transient:
                    interval *= 2
                else:
                    raise
                if on_poll is not None:
                    on_poll(DevicePollAttempt(outcome=exc.error, next_interval=interval))

    # --- revocation (RFC 7009) ---------------------------------------------------------------------

    def revoke(self, token: str, *, token_type_hint: TokenTypeHint | None = None) -> None:
        """Revoke ``token`` (RFC 7009 §2.1). A 200 means done, also for an already invalid token
        (§2.2). Raises ``ConfigurationError`` (``unsupported_endpoint``) when the metadata
        advertises no revocation endpoint, ``ProtocolError`` for an error response (a 503 is
        transient and carries ``retry_after``, §2.2.1)."""
        endpoint = self.metadata.revocation_endpoint
        if endpoint is None:
            _unsupported("revocation endpoint")
        form = {"token": token}
        if token_type_hint is not None:
            form["token_type_hint"] = token_type_hint
        response, received_at = self._post(
            endpoint, form, self.metadata.revocation_endpoint_auth_methods_supported
        )
        if response.status != 200:
            raise error_from_response(
                response.status,
                response.body,
                media_type=response.media_type,
                retry_after=parse_retry_after(response.headers.get("retry-after"), now=received_at),
                what="revocation response",
            )
