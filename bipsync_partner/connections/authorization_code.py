"""The authorization-code flow with PKCE (RFC 6749 §4.1, RFC 7636) behind "Connect Bipsync",
for user and service-account connections.

- :func:`begin`: the authorization request; the pending authorization is kept server-side.
- :func:`finish`: the callback. Each step is one of the protocol's: check the callback
  (§4.1.2, RFC 9207), exchange the code (§4.1.3), learn whom the token acts as, then hold it for
  confirmation (another subject than before) or store it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, Team, User
from bipsync_partner.connections import clients
from bipsync_partner.connections.connect_errors import ConnectError, oauth_sentence
from bipsync_partner.connections.kinds import spec
from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.pending import (
    PendingAuthorizationRecord,
    SessionPendingStore,
    pending_lifetime,
)
from bipsync_partner.connections.store import (
    Connected,
    Grant,
    Owner,
    store_token,
    target_connection,
)
from bipsync_partner.connections.subject_change import hold
from bipsync_partner.oauth import (
    AuthorizationClients,
    AuthorizationKind,
    CallbackDenied,
    CallbackError,
    CallbackResult,
    CallbackSuccess,
    ConfigurationError,
    OAuthError,
    PendingAuthorization,
    Token,
    complete_callback,
    start_authorization,
    validate_slug,
)

log = logging.getLogger(__name__)

CALLBACK_SENTENCES: Final[dict[str, str]] = {
    "missing_state": (
        "This answer from Bipsync carries no state, so it cannot be matched to a connection you "
        "started. Start again from the Connections page."
    ),
    "unknown": (
        "This answer from Bipsync does not belong to any connection started here. Start again "
        "from the Connections page."
    ),
    "reused": (
        "This answer from Bipsync was already used. Each sign-in at Bipsync can complete one "
        "connection only; start again from the Connections page."
    ),
    "other_session": (
        "This connection was started in another browser session or by another person, so it "
        "cannot be completed here. Start again from the Connections page."
    ),
    "expired_request": (
        "The sign-in at Bipsync took too long, so this connection attempt has expired. Start "
        "again from the Connections page."
    ),
    "iss_mismatch": (
        "This answer claims to come from another Bipsync site than the one you connected to, "
        "so it was refused. Start again from the Connections page."
    ),
    "missing_iss": (
        "This answer does not say which Bipsync site it comes from, although the site promised "
        "to, so it was refused. Start again from the Connections page."
    ),
    "malformed": (
        "This answer from Bipsync is malformed and was refused. Start again from the Connections "
        "page."
    ),
    "unreadable": (
        "This connection attempt can no longer be read here (it was stored with an encryption "
        "key this app no longer has), so it cannot be completed. Start again from the "
        "Connections page."
    ),
}


@dataclass(frozen=True)
class Denied:
    team: Team
    tenant: str


@dataclass(frozen=True)
class NeedsConfirmation:
    record: PendingAuthorizationRecord


FinishResult = Connected | Denied | NeedsConfirmation


def redirect_uri() -> str:
    """One callback for every kind: SITE_URL + /connections/callback/ (register it at Bipsync)."""
    return f"{settings.SITE_URL}{reverse('connections:callback')}"


def _authorization_clients(kind: AuthorizationKind) -> AuthorizationClients:
    # Only the application the kind needs must be configured: the core picks it by kind.
    client = clients.client_for(kind)
    return AuthorizationClients(user=client, service_account=client)


# --- the authorization request (§4.1.1) ---------------------------------------------------------


def begin(
    *,
    session_key: str,
    user: User,
    membership: Membership,
    tenant: str,
    kind: AuthorizationKind,
    connection_id: UUID | None = None,
    scopes: Sequence[str] | None = None,
) -> str:
    """Start an authorization; return the tenant's authorize URL to redirect the browser to.

    ``scopes`` replaces ``BIPSYNC_SCOPES`` (a re-consent asking for a scope the team now needs).
    """
    if spec(kind).admin_only and not membership.is_admin:
        raise ConnectError("Only team admins can connect the team's service account.", status=403)
    url, pending = _authorization_request(tenant, kind, scopes)
    owner = Owner.of(team=membership.team, user=user, tenant=tenant, kind=kind)
    target = target_connection(owner, connection_id)
    store = SessionPendingStore(
        session_key,
        user.pk,
        team_id=membership.team_id,
        kind=kind,
        tenant=tenant,
        connection_id=target.pk if target is not None else None,
    )
    store.put(pending)
    return url


def _authorization_request(
    tenant: str, kind: AuthorizationKind, scopes: Sequence[str] | None = None
) -> tuple[str, PendingAuthorization]:
    """The tenant's authorize URL and the pending authorization (PKCE verifier, state) to keep."""
    try:
        resolved = clients.tenant(validate_slug(tenant))
        authorization_clients = _authorization_clients(kind)
        with clients.http_client() as http:
            metadata = clients.server_metadata(resolved, http)
        return start_authorization(
            metadata,
            authorization_clients,
            redirect_uri=redirect_uri(),
            scopes=clients.requested_scopes() if scopes is None else list(scopes),
            kind=kind,
            now=timezone.now(),
        )
    except clients.ClientNotConfigured as exc:
        log.error("Connect impossible: %s", exc)
        raise ConnectError(
            "This app is not set up to connect that kind of Bipsync connection yet; ask the "
            "people who run it to configure its Bipsync application.",
            status=503,
            code="not_configured",
        ) from None
    except ConfigurationError as exc:
        if exc.error == "invalid_tenant":
            raise ConnectError(
                "A Bipsync site is 1-63 lowercase letters, digits or inner hyphens, as in acme "
                "for acme.bipsync.com.",
                code="invalid_tenant",
            ) from None
        raise ConnectError(oauth_sentence(exc, "the connection"), status=502) from None
    except OAuthError as exc:
        if exc.error in ("metadata_unavailable", "invalid_issuer"):
            raise ConnectError(
                f"No Bipsync site called {tenant!r} answered; check the name.",
                code="unknown_tenant",
            ) from None
        raise ConnectError(oauth_sentence(exc, "the Bipsync site's details"), status=502) from None


# --- the callback (§4.1.2 to §4.1.4)-----------------------------------------------------------


def finish(*, query_string: str, session_key: str | None, user: User | None) -> FinishResult:
    """Complete the authorization the callback answers, or raise :class:`ConnectError`.

    No token request is made unless every check passed: state present, known, unused, of this
    session and user; not expired; ``iss`` the tenant's issuer; no error; a code.
    """
    if user is None or session_key is None:
        raise ConnectError(
            "You are not signed in here any more, so this answer from Bipsync cannot be matched "
            "to a connection you started. Sign in and start again.",
            code="not_signed_in",
        )
    record, answer = _check_callback(query_string, SessionPendingStore(session_key, user.pk))
    _check_still_allowed(user, record)
    if isinstance(answer, CallbackDenied):
        return _denied(record, answer)
    grant = Grant.of(_exchange_code(record, answer), record.tenant)
    owner = Owner.of(team=record.team, user=user, tenant=record.tenant, kind=record.kind)
    target = _reconnected(record, owner)
    # A reconnect that comes back as another Bipsync account (signed in as someone else at
    # Bipsync, or approved in another Bipsync team) would change whose research the connection
    # reads: held for confirmation, the member's own connections as well as the service account.
    if target is not None and grant.acts_as_another_subject_than(target):
        hold(record, grant, target)
        return NeedsConfirmation(record=record)
    return store_token(owner, grant, actor=user, target=target)


def _check_callback(
    query_string: str, store: SessionPendingStore
) -> tuple[PendingAuthorizationRecord, CallbackResult]:
    """Every check of the OAuth core; the pending authorization is used once."""
    try:
        answer = complete_callback(
            query_string,
            store,
            now=timezone.now(),
            lifetime=pending_lifetime(),
            max_code_length=settings.BIPSYNC_MAX_AUTHORIZATION_CODE_LENGTH,
        )
    except CallbackError as exc:
        log.info("Refused a Bipsync callback: %s", exc.error)
        raise ConnectError(_refusal_sentence(exc, store), code=exc.error) from None
    assert store.record is not None
    return store.record, answer


def _refusal_sentence(exc: CallbackError, store: SessionPendingStore) -> str:
    if exc.error == "missing_parameter" and "state" in str(exc):
        return CALLBACK_SENTENCES["missing_state"]
    if exc.error == "unknown_state":
        return CALLBACK_SENTENCES[store.refusal or "unknown"]
    if exc.error == "expired_request":
        return CALLBACK_SENTENCES["expired_request"]
    if exc.error == "invalid_pending":
        return CALLBACK_SENTENCES["unreadable"]
    if exc.error == "iss_mismatch":
        return CALLBACK_SENTENCES["iss_mismatch"]
    if exc.error == "missing_parameter" and "iss" in str(exc):
        return CALLBACK_SENTENCES["missing_iss"]
    return CALLBACK_SENTENCES["malformed"]


def _check_still_allowed(user: User, record: PendingAuthorizationRecord) -> None:
    membership = user.membership_in(record.team)
    if membership is None or (spec(record.kind).admin_only and not membership.is_admin):
        raise ConnectError(
            "You are no longer allowed to make this connection for the team.",
            status=403,
            code="forbidden",
        )


def _denied(record: PendingAuthorizationRecord, answer: CallbackDenied) -> Denied:
    """§4.1.2.1: the person said no (a page, not an error), or Bipsync answered an error."""
    if answer.access_denied:
        return Denied(team=record.team, tenant=record.tenant)
    # The core clips the description; the error code is clipped here (RFC 6749 bounds
    # neither, and both come from the address bar).
    error = answer.error[:64]
    log.info("Bipsync answered the authorization with an error: %s", error)
    detail = f": {answer.description}" if answer.description else ""
    raise ConnectError(
        f"Bipsync did not grant the connection ({error}{detail}). Start again from "
        "the Connections page, or ask your Bipsync administrator.",
        code=error,
    )


def _exchange_code(record: PendingAuthorizationRecord, answer: CallbackSuccess) -> Token:
    """§4.1.3: the code for tokens, at the token endpoint pinned when the flow began."""
    try:
        with clients.http_client() as http:
            grants = clients.grant_client(
                clients.tenant(record.tenant), clients.client_for(record.kind), http
            )
            return grants.exchange_code(record.pending(), answer)
    except clients.ClientNotConfigured:
        raise ConnectError(
            "This app is no longer set up for this kind of connection.", status=503
        ) from None
    except OAuthError as exc:
        log.info("The code exchange failed: %s", exc.error)
        raise ConnectError(
            oauth_sentence(exc, "the connection") + " Start again from the Connections page.",
            status=502 if exc.transient else 400,
            code=exc.error[:64],
        ) from None


def _reconnected(record: PendingAuthorizationRecord, owner: Owner) -> Connection | None:
    """The connection the flow began for, if it is still of its kind; else the owner's."""
    target = (
        Connection.objects.filter(pk=record.connection_id).first() if record.connection_id else None
    )
    if target is None or target.kind != record.kind:
        target = target_connection(owner)
    return target
