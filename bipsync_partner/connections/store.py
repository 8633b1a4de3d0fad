"""Storing a token: the one step every way of connecting ends with (the callback, a confirmed
change of subject, the device command, a machine connection, the soak's seeding).

The tokens land on the connection they reconnect, or on a new one; the history says whom they act
as; the grant they replace is revoked at Bipsync after the commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, transaction

from accounts.models import Team, User
from bipsync_partner.connections import clients
from bipsync_partner.connections.identity import identify
from bipsync_partner.connections.kinds import spec
from bipsync_partner.connections.models import Connection, ConnectionEvent
from bipsync_partner.connections.notifications import clear_notices
from bipsync_partner.connections.revocation import revoke_quietly
from bipsync_partner.connections.signals import announce_reconnect
from bipsync_partner.oauth import Token

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Owner:
    """Whose connection the tokens belong to: a team's, and for personal kinds one member's."""

    team: Team
    user: User | None
    tenant: str
    kind: str

    @classmethod
    def of(cls, *, team: Team, user: User | None, tenant: str, kind: str) -> Owner:
        """The owner of a ``kind`` connection; ``user`` is kept only for personal kinds."""
        personal = spec(kind).personal
        return cls(team=team, user=user if personal else None, tenant=tenant, kind=kind)


@dataclass(frozen=True)
class Grant:
    """A token and whom it acts as."""

    token: Token
    subject: str
    subject_name: str
    #: The Bipsync team the subject acts in (service accounts, teams), when the server says.
    subject_team: str = ""
    subject_team_name: str = ""

    @classmethod
    def of(cls, token: Token, tenant: str | None = None) -> Grant:
        """Whom the token acts as, from ``BIPSYNC_IDENTITY_SOURCE`` ([choice]: Bipsync
        documents no way to ask; :mod:`bipsync_partner.connections.identity`). Empty strings
        when the source says nothing."""
        found = identify(token, tenant)
        return cls(
            token=token,
            subject=found.subject,
            subject_name=found.subject_name,
            subject_team=found.subject_team,
            subject_team_name=found.subject_team_name,
        )

    def acts_as_another_subject_than(self, connection: Connection | None) -> bool:
        """Whether these tokens would change whose research ``connection`` reads (unknown on
        either side: no)."""
        return (
            connection is not None
            and bool(connection.subject_id)
            and bool(self.subject)
            and self.subject != connection.subject_id
        )


@dataclass(frozen=True)
class MachineCredentials:
    """The customer's own application of a machine (client credentials) connection."""

    client_id: str
    client_secret: str
    bipsync_team_id: str


@dataclass(frozen=True)
class Connected:
    connection: Connection
    reconnected: bool


def refresh_token_lifetime() -> timedelta:
    # Bipsync does not say when a refresh token lapses; 30 days is the reference's [choice]
    # (same setting as the token service).
    return timedelta(seconds=settings.BIPSYNC_REFRESH_TOKEN_LIFETIME_SECONDS)


def target_connection(owner: Owner, connection_id: UUID | None = None) -> Connection | None:
    """The connection a new authorization lands on: the one named (if it matches), else the
    live one for the same owner, kind and tenant, else the latest disconnected one (so that its
    history continues), else none (a new connection)."""
    qs = Connection.objects.filter(team=owner.team, tenant=owner.tenant, kind=owner.kind)
    if spec(owner.kind).personal:
        qs = qs.filter(user=owner.user)
    if connection_id is not None:
        named = qs.filter(pk=connection_id).first()
        if named is not None and (named.is_live or not qs.live().exists()):
            return named
    return qs.live().first() or qs.order_by("-updated").first()


def store_token(
    owner: Owner,
    grant: Grant,
    *,
    actor: User | None,
    target: Connection | None,
    machine: MachineCredentials | None = None,
    note: str = "",
) -> Connected:
    """Put the granted tokens on ``target`` (reconnect) or on a new connection, record it, and
    revoke the tokens they replaced."""
    try:
        conn, replaced = _write(owner, grant, actor, target, machine, note)
    except IntegrityError:
        # Someone else connected the same thing a moment ago: land on theirs.
        raced = target_connection(owner)
        if raced is None or target is not None:
            raise
        conn, replaced = _write(owner, grant, actor, raced, machine, note)
        target = raced
    log.info("Stored new tokens on %r", conn)
    _revoke_replaced(conn, actor, *replaced)
    if target is not None:
        # After the commit (at once when there is no outer transaction): a catch-up sync must
        # find the new tokens.
        transaction.on_commit(lambda: announce_reconnect(conn, actor))
    return Connected(connection=conn, reconnected=target is not None)


def _write(
    owner: Owner,
    grant: Grant,
    actor: User | None,
    target: Connection | None,
    machine: MachineCredentials | None,
    note: str,
) -> tuple[Connection, tuple[str | None, str | None]]:
    """One transaction: the tokens on the connection and a line in its history. Returns the
    connection and the (refresh, access) tokens it held before, to revoke after the commit."""
    with transaction.atomic():
        if target is not None:
            # The token service may be refreshing this row right now: wait for its lock.
            conn = Connection.objects.select_for_update(of=("self",)).get(pk=target.pk)
            previous_subject = conn.subject_name or conn.subject_id
        else:
            conn = Connection(
                team=owner.team,
                user=owner.user,
                created_by=actor,
                tenant=owner.tenant,
                kind=owner.kind,
            )
            previous_subject = ""
        # The replaced grant is revoked after the commit: it must not stay usable at Bipsync for
        # its remaining 30 days when nobody here holds it any more. (Revoked with the partner's
        # application; a machine connection's own is not kept for that.)
        replaced = (
            (conn.refresh_token, conn.access_token)
            if target is not None and not conn.kind_spec.own_application
            else (None, None)
        )
        _put_tokens(conn, grant, machine)
        conn.record(
            ConnectionEvent.Kind.RECONNECTED
            if target is not None
            else ConnectionEvent.Kind.CONNECTED,
            actor,
            _history_line(grant, previous_subject, note),
        )
        clear_notices(conn)
    return conn, replaced


def _put_tokens(conn: Connection, grant: Grant, machine: MachineCredentials | None) -> None:
    token = grant.token
    if grant.subject:
        conn.subject_id = grant.subject
        conn.subject_name = grant.subject_name
    if machine is not None:
        conn.client_id = machine.client_id
        conn.client_secret = machine.client_secret
        conn.bipsync_team_id = machine.bipsync_team_id
    # A machine connection's team is the one its form names; the answer may only name it.
    if grant.subject_team and (
        not conn.kind_spec.own_application or grant.subject_team == conn.bipsync_team_id
    ):
        conn.bipsync_team_id = grant.subject_team
        conn.bipsync_team_name = grant.subject_team_name
    conn.set_tokens(
        access_token=token.access_token,
        refresh_token=token.refresh_token,
        access_expires_at=token.expires_at,
        refresh_expires_at=(
            token.received_at + refresh_token_lifetime() if token.refresh_token else None
        ),
        scopes=" ".join(token.scopes),
        now=token.received_at,
    )
    conn.save()


def _history_line(grant: Grant, previous_subject: str, note: str) -> str:
    who = grant.subject_name or grant.subject or "an unnamed Bipsync subject"
    line = f"Acts as {who}; scopes {' '.join(grant.token.scopes) or '(none)'}."
    if previous_subject and previous_subject != (grant.subject_name or grant.subject):
        line += f" Before, it acted as {previous_subject}."
    if note:
        line += f" {note}"
    return line


def _revoke_replaced(
    conn: Connection, actor: User | None, refresh_token: str | None, access_token: str | None
) -> None:
    if not refresh_token and not access_token:
        return
    outcome, sentence = revoke_quietly(
        conn.tenant, clients.client_for(conn.kind), refresh_token, access_token
    )
    if outcome == "revoked":
        conn.record(ConnectionEvent.Kind.REVOKED, actor, "Revoked the replaced tokens at Bipsync.")
    elif outcome == "failed":
        conn.record(ConnectionEvent.Kind.REVOCATION_FAILED, actor, sentence)
