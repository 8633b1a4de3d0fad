"""Which connection writes: the one the caller named, else the team's service account.

A write needs a live connection whose grant includes the write scopes (``BIPSYNC_WRITE_SCOPES``,
``rest_api:write`` by default; docs/bipsync.md, "Scopes"). Without one the write fails at once with a sentence saying what
to do; nothing is sent.
"""

from __future__ import annotations

from django.urls import reverse

from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.scopes import write_scopes
from bipsync_partner.writes.models import Write


class WriteRefusal(Exception):
    """The connection cannot write. ``final`` False: it may once someone reconnects it, so the
    write waits (with backoff) instead of failing."""

    def __init__(self, code: str, sentence: str, *, final: bool = True) -> None:
        super().__init__(sentence)
        self.code = code
        self.sentence = sentence
        self.final = final


def team_service_account(team_id: int) -> Connection:
    accounts = list(
        Connection.objects.filter(team_id=team_id, kind=Connection.Kind.SERVICE_ACCOUNT)
        .exclude(status=Connection.Status.DISCONNECTED)
        .order_by("created")[:2]
    )
    if not accounts:
        raise WriteRefusal(
            "no_service_account",
            "The team has no Bipsync service account connected; an admin connects one on the "
            "Connections page (or the write names another connection).",
        )
    if len(accounts) > 1:
        raise WriteRefusal(
            "several_service_accounts",
            "The team has service accounts on several Bipsync sites; the write must name the "
            "connection it goes through.",
        )
    return accounts[0]


def check_can_write(connection: Connection) -> None:
    if not connection.is_live:
        raise WriteRefusal(
            "disconnected", "The connection was disconnected; connect it again to write."
        )
    if connection.status == Connection.Status.NEEDS_RECONNECT:
        raise WriteRefusal(
            "needs_reconnect",
            "The connection needs reconnecting before it can write; the write waits for it.",
            final=False,
        )
    missing = [scope for scope in write_scopes() if scope not in connection.scope_list]
    if missing:
        page = reverse("connections:detail", args=[connection.team.slug, connection.pk])
        raise WriteRefusal(
            "missing_write_scope",
            f"The connection lacks the {' '.join(missing)} scope; use Re-consent at Bipsync on "
            f"its page ({page}#scopes) to grant it, then send the write again.",
        )


def writing_connection(write: Write) -> Connection:
    connection = (
        Connection.objects.filter(pk=write.connection_id).first()
        if write.connection_id is not None
        else team_service_account(write.team_id)
    )
    if connection is None:
        raise WriteRefusal("no_connection", "The write's connection no longer exists.")
    if connection.team_id != write.team_id:
        raise WriteRefusal("wrong_team", "The write's connection belongs to another team.")
    check_can_write(connection)
    return connection
