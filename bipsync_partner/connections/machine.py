"""Machine connections: a team's own Bipsync application, with the client credentials grant
(RFC 6749 §4.4), proven by a first token request before anything is saved."""

from __future__ import annotations

from dataclasses import replace

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


def add_machine_connection(
    *,
    team: Team,
    actor: User,
    tenant: str,
    credentials: MachineCredentials,
    scopes: list[str],
) -> Connected:
    """Prove the customer's credentials with a first token request, then store them. On failure
    nothing is saved and :class:`ConnectError` carries the OAuth error."""
    learned = Grant.of(_first_token(tenant, credentials, scopes))
    # Without a subject in the answer, the connection acts as the Bipsync team it names.
    team_id = credentials.bipsync_team_id
    grant = replace(
        learned,
        subject=learned.subject or team_id,
        subject_name=learned.subject_name or f"Bipsync team {team_id}",
    )
    owner = Owner.of(team=team, user=None, tenant=tenant, kind=Connection.Kind.CLIENT_CREDENTIALS)
    return store_token(owner, grant, actor=actor, target=None, machine=credentials)


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
                f"No Bipsync site called {tenant!r} answered; check the name.",
                code="unknown_tenant",
            ) from None
        raise ConnectError(
            oauth_sentence(exc, "these credentials"),
            status=502 if exc.transient else 400,
            code=exc.error[:64],
        ) from None
