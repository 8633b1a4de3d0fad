"""Making, remaking and ending connections: the logic behind the connect pages and commands.

- :func:`begin`: "Connect Bipsync" (authorization code with PKCE, user or service account).
- :func:`finish`: the callback — every check of the OAuth core, the pending authorization used
  once, the code exchanged, the tokens stored on the right connection.
- :func:`confirm_subject_change` / :func:`cancel_subject_change`: a reconnect that came back as
  another Bipsync subject waits for the person who made it (an admin, for the service account).
- :func:`disconnect`: revoke at Bipsync when advertised (RFC 7009), wipe, keep the history.
- :func:`add_machine_connection`: client credentials, proven by a first token request.
- :func:`store_token`: shared by all of them (and the device command).

Errors people should read are :class:`ConnectError` with a sentence and an HTTP status; nothing
here ever puts a token, code, verifier or secret in a message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, Team, User
from bipsync_partner.connections import clients
from bipsync_partner.connections.crypto import DecryptionError
from bipsync_partner.connections.models import Connection, ConnectionEvent
from bipsync_partner.connections.notifications import clear_notices
from bipsync_partner.connections.pending import (
    PendingAuthorizationRecord,
    SessionPendingStore,
    hold_lifetime,
    pending_lifetime,
)
from bipsync_partner.oauth import (
    AuthorizationClients,
    CallbackDenied,
    CallbackError,
    ClientConfig,
    ConfigurationError,
    GrantClient,
    OAuthError,
    Token,
    complete_callback,
    start_authorization,
    validate_slug,
)

log = logging.getLogger(__name__)

AuthorizationKind = Literal["user", "service_account"]
RevocationOutcome = Literal["revoked", "unsupported", "nothing", "failed"]

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


class ConnectError(Exception):
    """A sentence for people and the HTTP status of the page that shows it."""

    def __init__(self, message: str, *, status: int = 400, code: str = "connect_failed") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Connected:
    connection: Connection
    reconnected: bool


@dataclass(frozen=True)
class Denied:
    team: Team
    tenant: str


@dataclass(frozen=True)
class NeedsConfirmation:
    record: PendingAuthorizationRecord


FinishResult = Connected | Denied | NeedsConfirmation


# --- settings-driven pieces --------------------------------------------------------------------


def redirect_uri() -> str:
    """One callback for every kind: SITE_URL + /connections/callback/ (register it at Bipsync)."""
    return f"{settings.SITE_URL}{reverse('connections:callback')}"


def requested_scopes() -> list[str]:
    return str(settings.BIPSYNC_SCOPES).split()


def refresh_token_lifetime() -> timedelta:
    # Bipsync does not say when a refresh token lapses; 30 days is the reference's [choice]
    # (same setting as the token service).
    return timedelta(
        seconds=float(getattr(settings, "BIPSYNC_REFRESH_TOKEN_LIFETIME_SECONDS", 30 * 86400))
    )


def subject_of(token: Token) -> tuple[str, str]:
    """Whom the token acts as, from the token response's additional parameters ([choice]:
    Bipsync documents none; the names are settings). Empty strings when the server says nothing.
    """
    id_parameter = getattr(settings, "BIPSYNC_TOKEN_SUBJECT_PARAMETER", "subject")
    name_parameter = getattr(settings, "BIPSYNC_TOKEN_SUBJECT_NAME_PARAMETER", "subject_name")
    subject = token.extra.get(id_parameter, "")[:64] if id_parameter else ""
    name = token.extra.get(name_parameter, "")[:200] if name_parameter else ""
    return subject, name


def _authorization_clients(kind: AuthorizationKind) -> AuthorizationClients:
    # Only the application the kind needs must be configured.
    if kind == "service_account":
        service = clients.service_client()
        return AuthorizationClients(user=service, service_account=service)
    return AuthorizationClients(user=clients.user_client())


def _oauth_sentence(exc: OAuthError, doing: str) -> str:
    detail = f": {exc.description}" if exc.description else ""
    if exc.transient:
        return (
            f"Bipsync could not be reached or did not answer properly while {doing} "
            f"({exc.error}{detail}). Try again in a moment."
        )
    return f"Bipsync refused {doing} ({exc.error}{detail})."


# --- connect ---------------------------------------------------------------------------------


def target_connection(
    *, team: Team, user: User | None, kind: str, tenant: str, connection_id: UUID | None = None
) -> Connection | None:
    """The connection a new authorization lands on: the one named (if it matches), else the
    live one for the same owner, kind and tenant, else the latest disconnected one (so that its
    history continues), else none (a new connection)."""
    qs = Connection.objects.filter(team=team, tenant=tenant, kind=kind)
    if kind in Connection.PERSONAL_KINDS:
        qs = qs.filter(user=user)
    if connection_id is not None:
        named = qs.filter(pk=connection_id).first()
        if named is not None and (named.is_live or not qs.live().exists()):
            return named
    return qs.live().first() or qs.order_by("-updated").first()


def begin(
    *,
    session_key: str,
    user: User,
    membership: Membership,
    tenant: str,
    kind: AuthorizationKind,
    connection_id: UUID | None = None,
) -> str:
    """Start an authorization; return the tenant's authorize URL to redirect the browser to."""
    if kind == "service_account" and not membership.is_admin:
        raise ConnectError("Only team admins can connect the team's service account.", status=403)
    try:
        resolved = clients.tenant(validate_slug(tenant))
        authorization_clients = _authorization_clients(kind)
        with clients.http_client() as http:
            metadata = clients.server_metadata(resolved, http)
        url, pending = start_authorization(
            metadata,
            authorization_clients,
            redirect_uri=redirect_uri(),
            scopes=requested_scopes(),
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
        raise ConnectError(_oauth_sentence(exc, "the connection"), status=502) from None
    except OAuthError as exc:
        if exc.error in ("metadata_unavailable", "invalid_issuer"):
            raise ConnectError(
                f"No Bipsync site called {tenant!r} answered; check the name.",
                code="unknown_tenant",
            ) from None
        raise ConnectError(
            _oauth_sentence(exc, "looking up the Bipsync site"), status=502
        ) from None
    target = target_connection(
        team=membership.team, user=user, kind=kind, tenant=tenant, connection_id=connection_id
    )
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
    store = SessionPendingStore(session_key, user.pk)
    try:
        result = complete_callback(
            query_string,
            store,
            now=timezone.now(),
            lifetime=pending_lifetime(),
            max_code_length=settings.BIPSYNC_MAX_AUTHORIZATION_CODE_LENGTH,
        )
    except CallbackError as exc:
        log.info("Refused a Bipsync callback: %s", exc.error)
        raise ConnectError(_refusal_sentence(exc, store), code=exc.error) from None
    record = store.record
    assert record is not None
    membership = user.membership_in(record.team)
    if membership is None or (record.kind == "service_account" and not membership.is_admin):
        raise ConnectError(
            "You are no longer allowed to make this connection for the team.",
            status=403,
            code="forbidden",
        )
    if isinstance(result, CallbackDenied):
        if result.access_denied:
            return Denied(team=record.team, tenant=record.tenant)
        # The core clips the description; the error code is clipped here (RFC 6749 bounds
        # neither, and both come from the address bar).
        error = result.error[:64]
        log.info("Bipsync answered the authorization with an error: %s", error)
        detail = f": {result.description}" if result.description else ""
        raise ConnectError(
            f"Bipsync did not grant the connection ({error}{detail}). Start again from "
            "the Connections page, or ask your Bipsync administrator.",
            code=error,
        )
    pending = record.pending()
    try:
        with clients.http_client() as http:
            grants = clients.grant_client(
                clients.tenant(record.tenant), clients.client_for(record.kind), http
            )
            token = grants.exchange_code(pending, result)
    except clients.ClientNotConfigured:
        raise ConnectError(
            "This app is no longer set up for this kind of connection.", status=503
        ) from None
    except OAuthError as exc:
        log.info("The code exchange failed: %s", exc.error)
        raise ConnectError(
            _oauth_sentence(exc, "to complete the connection")
            + " Start again from the Connections page.",
            status=502 if exc.transient else 400,
            code=exc.error[:64],
        ) from None

    subject, subject_name = subject_of(token)
    target = (
        Connection.objects.filter(pk=record.connection_id).first() if record.connection_id else None
    )
    if target is None or target.kind != record.kind:
        target = target_connection(
            team=record.team, user=user, kind=record.kind, tenant=record.tenant
        )
    # A reconnect that comes back as another Bipsync account (signed in as someone else at
    # Bipsync, or approved in another Bipsync team) would change whose research the connection
    # reads: held for confirmation, the member's own connections as well as the service account.
    if target is not None and target.subject_id and subject and subject != target.subject_id:
        _hold(record, token, subject, subject_name, target)
        return NeedsConfirmation(record=record)
    return store_token(
        team=record.team,
        user=user if record.kind in Connection.PERSONAL_KINDS else None,
        actor=user,
        tenant=record.tenant,
        kind=record.kind,
        token=token,
        subject=subject,
        subject_name=subject_name,
        target=target,
    )


# --- storing tokens ----------------------------------------------------------------------------


def store_token(
    *,
    team: Team,
    user: User | None,
    actor: User | None,
    tenant: str,
    kind: str,
    token: Token,
    subject: str,
    subject_name: str,
    target: Connection | None,
    machine: tuple[str, str, str] | None = None,
    note: str = "",
) -> Connected:
    """Put ``token`` on ``target`` (reconnect) or on a new connection, and record it."""
    refresh_expires_at = (
        token.received_at + refresh_token_lifetime() if token.refresh_token else None
    )
    try:
        with transaction.atomic():
            if target is not None:
                # The token service may be refreshing this row right now: wait for its lock.
                conn = Connection.objects.select_for_update(of=("self",)).get(pk=target.pk)
                reconnected = True
                previous_subject = conn.subject_name or conn.subject_id
            else:
                conn = Connection(team=team, user=user, created_by=actor, tenant=tenant, kind=kind)
                reconnected = False
                previous_subject = ""
            # The replaced grant is revoked below, after the commit: it must not stay usable at
            # Bipsync for its remaining 30 days when nobody here holds it any more.
            replaced = (
                (conn.refresh_token, conn.access_token)
                if reconnected and conn.kind != Connection.Kind.CLIENT_CREDENTIALS
                else (None, None)
            )
            if subject:
                conn.subject_id = subject
                conn.subject_name = subject_name
            if machine is not None:
                conn.client_id, conn.client_secret, conn.bipsync_team_id = machine
            conn.set_tokens(
                access_token=token.access_token,
                refresh_token=token.refresh_token,
                access_expires_at=token.expires_at,
                refresh_expires_at=refresh_expires_at,
                scopes=" ".join(token.scopes),
                now=token.received_at,
            )
            conn.save()
            who = subject_name or subject or "an unnamed Bipsync subject"
            message = f"Acts as {who}; scopes {' '.join(token.scopes) or '(none)'}."
            if reconnected and previous_subject and previous_subject != (subject_name or subject):
                message += f" Before, it acted as {previous_subject}."
            if note:
                message += f" {note}"
            conn.record(
                ConnectionEvent.Kind.RECONNECTED if reconnected else ConnectionEvent.Kind.CONNECTED,
                actor,
                message,
            )
            clear_notices(conn)
    except IntegrityError:
        # Someone else connected the same thing a moment ago: land on theirs.
        raced = target_connection(team=team, user=user, kind=kind, tenant=tenant)
        if raced is None or target is not None:
            raise
        return store_token(
            team=team,
            user=user,
            actor=actor,
            tenant=tenant,
            kind=kind,
            token=token,
            subject=subject,
            subject_name=subject_name,
            target=raced,
            machine=machine,
            note=note,
        )
    log.info("Stored new tokens on %r", conn)
    if any(replaced):
        outcome, sentence = _revoke_quietly(conn.tenant, clients.client_for(conn.kind), *replaced)
        if outcome == "revoked":
            conn.record(
                ConnectionEvent.Kind.REVOKED, actor, "Revoked the replaced tokens at Bipsync."
            )
        elif outcome == "failed":
            conn.record(ConnectionEvent.Kind.REVOCATION_FAILED, actor, sentence)
    return Connected(connection=conn, reconnected=reconnected)


# --- a reconnect as another subject ---------------------------------------------------------------


def _hold(
    record: PendingAuthorizationRecord,
    token: Token,
    subject: str,
    subject_name: str,
    target: Connection,
) -> None:
    record.held_access_token = token.access_token
    record.held_refresh_token = token.refresh_token
    record.held_details = {
        "connection": str(target.pk),
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "received_at": token.received_at.isoformat(),
        "scopes": list(token.scopes),
        "subject": subject,
        "subject_name": subject_name,
        "previous_subject": target.subject_id,
        "previous_subject_name": target.subject_name,
    }
    record.held_until = timezone.now() + hold_lifetime()
    record.save()


def held_record(
    record_id: UUID, *, session_key: str | None, user: User
) -> PendingAuthorizationRecord:
    """The held reconnect ``record_id`` of this session and user, or :class:`ConnectError`."""
    from bipsync_partner.connections.pending import digest

    record = (
        PendingAuthorizationRecord.objects.select_related("team")
        .filter(
            pk=record_id,
            user=user,
            session_hash=digest(session_key or ""),
            held_until__isnull=False,
        )
        .first()
    )
    if record is None or record.hold_expired(timezone.now()):
        raise ConnectError(
            "There is no reconnect waiting for your confirmation (it may have expired after "
            f"{int(hold_lifetime().total_seconds() // 60)} minutes). Start again from the "
            "Connections page.",
            status=404 if record is None else 410,
        )
    membership = user.membership_in(record.team)
    if membership is None or (record.kind == "service_account" and not membership.is_admin):
        raise ConnectError(
            "Only team admins can confirm this."
            if membership is not None
            else "You are no longer a member of this team.",
            status=403,
        )
    return record


def _held_token(record: PendingAuthorizationRecord) -> Token:
    details = record.held_details
    access = record.held_access_token
    assert access is not None
    expires = details.get("expires_at")
    return Token(
        access_token=access,
        token_type="Bearer",
        expires_at=datetime.fromisoformat(expires) if expires else None,
        refresh_token=record.held_refresh_token,
        scopes=tuple(details.get("scopes", ())),
        received_at=datetime.fromisoformat(details["received_at"]),
    )


def _take_hold(
    record_id: UUID, session_key: str | None, user: User
) -> tuple[PendingAuthorizationRecord, Token]:
    """Claim the held tokens exactly once (a double-clicked confirm applies them once)."""
    record = held_record(record_id, session_key=session_key, user=user)
    with transaction.atomic():
        locked = PendingAuthorizationRecord.objects.select_for_update().get(pk=record.pk)
        # held_until, not the held token: reading that decrypts it, which may fail (below).
        if locked.held_until is None:
            raise ConnectError("This reconnect was already decided.", status=409)
        try:
            token: Token | None = _held_token(locked)
        except DecryptionError:
            # Its key left TOKEN_ENCRYPTION_KEYS meanwhile: nothing to apply or revoke.
            token = None
        details = dict(locked.held_details)
        locked.save(update_fields=locked.release_hold())
    if token is None:
        raise ConnectError(
            "The new authorization can no longer be read here (it was stored with an encryption "
            "key this app no longer has). Start again from the Connections page.",
            code="unreadable",
        )
    locked.held_details = details
    return locked, token


def confirm_subject_change(record_id: UUID, *, session_key: str | None, user: User) -> Connected:
    record, token = _take_hold(record_id, session_key, user)
    details = record.held_details
    target = Connection.objects.filter(pk=details.get("connection"), team=record.team).first()
    previous = details.get("previous_subject_name") or details.get("previous_subject")
    return store_token(
        team=record.team,
        user=user if record.kind in Connection.PERSONAL_KINDS else None,
        actor=user,
        tenant=record.tenant,
        kind=record.kind,
        token=token,
        subject=details.get("subject", ""),
        subject_name=details.get("subject_name", ""),
        target=target,
        note=f"{user} confirmed the change of Bipsync subject (was {previous}).",
    )


def cancel_subject_change(record_id: UUID, *, session_key: str | None, user: User) -> Team:
    """Drop the held tokens, revoking them at Bipsync so that they do not linger there."""
    record, token = _take_hold(record_id, session_key, user)
    _revoke_quietly(
        record.tenant, clients.client_for(record.kind), token.refresh_token, token.access_token
    )
    return record.team


# --- disconnect -----------------------------------------------------------------------------------


def _revoke_quietly(
    tenant: str, client: ClientConfig, refresh_token: str | None, access_token: str | None
) -> tuple[RevocationOutcome, str]:
    """Revoke at Bipsync when its metadata advertises revocation (RFC 7009). Returns the outcome
    and a sentence for the history; never raises for Bipsync's or the network's failures."""
    if not refresh_token and not access_token:
        return "nothing", "There were no tokens to revoke."
    try:
        with clients.http_client() as http:
            grants: GrantClient = clients.grant_client(clients.tenant(tenant), client, http)
            if not grants.metadata.supports_revocation:
                return "unsupported", (
                    "Bipsync does not offer token revocation for this site; the tokens were "
                    "deleted here and expire there on their own."
                )
            # RFC 7009 §2.1: revoking the refresh token should end the access tokens of the same
            # grant too; the access token is revoked as well in case the server does not.
            if refresh_token:
                grants.revoke(refresh_token, token_type_hint="refresh_token")
            if access_token:
                grants.revoke(access_token, token_type_hint="access_token")
    except (OAuthError, clients.ClientNotConfigured) as exc:
        error = getattr(exc, "error", "not_configured")
        log.warning("Revocation at %s failed (%s)", tenant, error)
        return "failed", (
            f"The tokens could not be revoked at Bipsync ({error}); they were deleted here and "
            "expire there on their own."
        )
    return "revoked", "Revoked the tokens at Bipsync."


def disconnect(connection: Connection, actor: User) -> Connection:
    """Wipe the tokens and mark the connection disconnected (history kept), then revoke them at
    Bipsync with what was wiped."""
    with transaction.atomic():
        conn = Connection.objects.select_for_update(of=("self",)).get(pk=connection.pk)
        if conn.status == Connection.Status.DISCONNECTED:
            return conn
        refresh_token = conn.refresh_token
        access_token = conn.access_token
        machine = (conn.client_id, conn.client_secret)
        fields = conn.wipe_tokens()
        conn.status = Connection.Status.DISCONNECTED
        conn.clear_failures()
        conn.save(
            update_fields=[
                *fields,
                "status",
                "consecutive_failures",
                "next_retry_at",
                "last_error_code",
                "last_error_message",
            ]
        )
        conn.record(ConnectionEvent.Kind.DISCONNECTED, actor, f"Disconnected by {actor}.")
        clear_notices(conn)
    try:
        client = (
            clients.client_for(conn.kind, client_id=machine[0], client_secret=machine[1])
            if conn.kind == Connection.Kind.CLIENT_CREDENTIALS
            else clients.client_for(conn.kind)
        )
    except clients.ClientNotConfigured:
        conn.record(
            ConnectionEvent.Kind.REVOCATION_FAILED,
            actor,
            "The tokens could not be revoked at Bipsync (the app's application is not "
            "configured); they were deleted here.",
        )
        return conn
    outcome, sentence = _revoke_quietly(conn.tenant, client, refresh_token, access_token)
    if outcome != "nothing":
        conn.record(
            ConnectionEvent.Kind.REVOKED
            if outcome == "revoked"
            else ConnectionEvent.Kind.REVOCATION_FAILED,
            actor,
            sentence,
        )
    return conn


# --- machine connections (client credentials) -----------------------------------------------------


def add_machine_connection(
    *,
    team: Team,
    actor: User,
    tenant: str,
    client_id: str,
    client_secret: str,
    bipsync_team_id: str,
    scopes: list[str],
) -> Connected:
    """Prove the customer's credentials with a first token request (RFC 6749 §4.4), then store
    them. On failure nothing is saved and :class:`ConnectError` carries the OAuth error."""
    try:
        client = ClientConfig(client_id, client_secret)
    except ConfigurationError:
        raise ConnectError(
            "A client id and secret are visible characters without spaces.", code="invalid_client"
        ) from None
    try:
        with clients.http_client() as http:
            grants = clients.grant_client(clients.tenant(validate_slug(tenant)), client, http)
            token = grants.client_credentials(bipsync_team_id, scopes)
    except OAuthError as exc:
        if exc.error in ("metadata_unavailable", "invalid_issuer", "invalid_tenant"):
            raise ConnectError(
                f"No Bipsync site called {tenant!r} answered; check the name.",
                code="unknown_tenant",
            ) from None
        raise ConnectError(
            _oauth_sentence(exc, "these credentials"),
            status=502 if exc.transient else 400,
            code=exc.error[:64],
        ) from None
    subject, subject_name = subject_of(token)
    return store_token(
        team=team,
        user=None,
        actor=actor,
        tenant=tenant,
        kind=Connection.Kind.CLIENT_CREDENTIALS,
        token=token,
        subject=subject or bipsync_team_id,
        subject_name=subject_name or f"Bipsync team {bipsync_team_id}",
        target=None,
        machine=(client_id, client_secret, bipsync_team_id),
    )
