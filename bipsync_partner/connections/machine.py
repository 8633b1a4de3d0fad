"""Machine connections: a team's own Bipsync application, with the client credentials grant
(RFC 6749 §4.4), proven by a token request before anything is saved, when it is added and
whenever it is reconnected with a new client secret.

A team has one live machine connection per application and Bipsync team (client id and team
id): a second one would sync the same research twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from django.db import connection as db_connection
from django.db import transaction

from accounts.models import Team, User
from bipsync_partner.connections import clients
from bipsync_partner.connections.connect_errors import ConnectError, oauth_sentence
from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.store import (
    Connected,
    Grant,
    MachineCredentials,
    Owner,
    store_token,
)
from bipsync_partner.oauth import ClientConfig, ConfigurationError, OAuthError, Token, validate_slug


class DuplicateMachineConnection(ConnectError):
    """The team already has a live machine connection with these credentials."""

    def __init__(self, existing: Connection) -> None:
        super().__init__(
            "This team already has a machine connection with this client id and Bipsync team; "
            "reconnect or update that one instead of adding another.",
            status=409,
            code="duplicate",
        )
        self.existing = existing


def live_duplicate(
    team: Team, client_id: str, bipsync_team_id: str, *, besides: Connection | None = None
) -> Connection | None:
    """The team's live machine connection with this client id and Bipsync team, if any."""
    found = Connection.objects.live().filter(
        team=team,
        kind=Connection.Kind.CLIENT_CREDENTIALS,
        client_id=client_id,
        bipsync_team_id=bipsync_team_id,
    )
    if besides is not None:
        found = found.exclude(pk=besides.pk)
    return found.order_by("created").first()


def add_machine_connection(
    *,
    team: Team,
    actor: User,
    tenant: str,
    credentials: MachineCredentials,
    scopes: list[str],
    label: str = "",
) -> Connected:
    """Prove the customer's credentials with a first token request, then store them. On failure
    nothing is saved and :class:`ConnectError` carries the reason; credentials the team already
    connected raise :class:`DuplicateMachineConnection`. A disconnected connection with the same
    credentials is connected again, so that its history continues."""
    _refuse_duplicate(team, credentials)
    grant = _grant(_first_token(tenant, credentials, scopes), credentials, tenant)
    owner = Owner.of(team=team, user=None, tenant=tenant, kind=Connection.Kind.CLIENT_CREDENTIALS)
    with transaction.atomic():
        _lock_credentials(team, credentials)
        _refuse_duplicate(team, credentials)  # again, now that two admins cannot both pass
        earlier = (
            Connection.objects.filter(
                team=team,
                tenant=tenant,
                kind=Connection.Kind.CLIENT_CREDENTIALS,
                client_id=credentials.client_id,
                bipsync_team_id=credentials.bipsync_team_id,
            )
            .order_by("-updated")
            .first()
        )
        result = store_token(owner, grant, actor=actor, target=earlier, machine=credentials)
        if label:
            result.connection.label = label
            result.connection.save(update_fields=["label"])
    return result


def reconnect_machine_connection(
    connection: Connection, *, actor: User, client_secret: str, scopes: list[str]
) -> Connected:
    """Check the connection's application again with ``client_secret`` (the stored one when
    empty) and, once Bipsync gives a token, store it and the secret. Nothing changes when
    Bipsync refuses."""
    secret = client_secret or connection.client_secret or ""
    if not secret:
        raise ConnectError(
            "Enter the client secret: the stored one was deleted when the connection was "
            "disconnected.",
            code="secret_required",
        )
    credentials = MachineCredentials(
        client_id=connection.client_id,
        client_secret=secret,
        bipsync_team_id=connection.bipsync_team_id,
    )
    existing = live_duplicate(
        connection.team, credentials.client_id, credentials.bipsync_team_id, besides=connection
    )
    if existing is not None:
        raise DuplicateMachineConnection(existing)
    grant = _grant(
        _first_token(connection.tenant, credentials, scopes), credentials, connection.tenant
    )
    owner = Owner.of(
        team=connection.team,
        user=None,
        tenant=connection.tenant,
        kind=Connection.Kind.CLIENT_CREDENTIALS,
    )
    note = "The client secret was replaced." if client_secret else ""
    return store_token(owner, grant, actor=actor, target=connection, machine=credentials, note=note)


def _refuse_duplicate(team: Team, credentials: MachineCredentials) -> None:
    existing = live_duplicate(team, credentials.client_id, credentials.bipsync_team_id)
    if existing is not None:
        raise DuplicateMachineConnection(existing)


def _lock_credentials(team: Team, credentials: MachineCredentials) -> None:
    """A transaction-scoped PostgreSQL advisory lock on (team, client id, Bipsync team): two
    admins adding the same credentials at once are serialised, and the second one refused."""
    name = f"machine:{team.pk}:{credentials.client_id}:{credentials.bipsync_team_id}"
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _grant(token: Token, credentials: MachineCredentials, tenant: str) -> Grant:
    learned = Grant.of(token, tenant)
    # Without a subject in the answer, the connection acts as the Bipsync team it names.
    team_id = credentials.bipsync_team_id
    return replace(
        learned,
        subject=learned.subject or team_id,
        subject_name=learned.subject_name or f"Bipsync team {team_id}",
    )


def _first_token(tenant: str, credentials: MachineCredentials, scopes: list[str]) -> Token:
    try:
        client = ClientConfig(credentials.client_id, credentials.client_secret)
    except ConfigurationError:
        raise ConnectError(
            "A client id and secret are visible characters without spaces.", code="invalid_client"
        ) from None
    try:
        with clients.http_client() as http:
            grants = clients.grant_client(clients.tenant(validate_slug(tenant)), client, http)
            return grants.client_credentials(credentials.bipsync_team_id, scopes)
    except OAuthError as exc:
        if exc.error in ("metadata_unavailable", "invalid_issuer", "invalid_tenant"):
            raise ConnectError(
                f"No Bipsync site called {tenant} answered; check the name.",
                code="unknown_tenant",
            ) from None
        raise ConnectError(
            oauth_sentence(exc, "these credentials"),
            status=502 if exc.transient else 400,
            code=exc.error[:64],
        ) from None
