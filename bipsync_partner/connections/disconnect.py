"""Disconnect: wipe the tokens (the connection and its history stay), then revoke them at
Bipsync when its metadata advertises revocation (RFC 7009). :func:`what_disconnect_does` says
so beforehand, on the confirmation page."""

from __future__ import annotations

from django.db import transaction

from accounts.models import User
from bipsync_partner.connections import clients
from bipsync_partner.connections.models import Connection, ConnectionEvent
from bipsync_partner.connections.notifications import clear_notices
from bipsync_partner.connections.revocation import revoke_quietly
from bipsync_partner.connections.signals import connection_disconnected, disconnect_sentences
from bipsync_partner.oauth import ClientConfig


def what_disconnect_does(connection: Connection) -> list[str]:
    """What happens if ``connection`` is disconnected, a sentence each: at Bipsync, here, and
    (from the features built on connections, such as the sync) to what people see."""
    if connection.kind_spec.own_application:
        sentences = [
            "Its access token is revoked at Bipsync and deleted here, with the client secret; "
            "the team's application itself stays at Bipsync.",
        ]
    else:
        sentences = [
            "Its tokens are revoked at Bipsync, so this authorization stops working there too, "
            "and they are deleted here.",
        ]
    sentences += disconnect_sentences(connection)
    sentences.append(
        "Its history stays on its page; connecting it again continues the same connection."
    )
    return sentences


def disconnect(connection: Connection, actor: User) -> Connection:
    """Wipe the tokens and mark the connection disconnected (history kept), then revoke them at
    Bipsync with what was wiped."""
    with transaction.atomic():
        conn = Connection.objects.select_for_update(of=("self",)).get(pk=connection.pk)
        if conn.status == Connection.Status.DISCONNECTED:
            return conn
        refresh_token = conn.refresh_token
        access_token = conn.access_token
        try:
            # Read before the wipe: a machine connection's own application goes with it.
            client: ClientConfig | None = _client_of(conn)
        except clients.ClientNotConfigured:
            client = None
        _wipe(conn, actor)
        transaction.on_commit(
            lambda: connection_disconnected.send(sender=Connection, connection=conn)
        )
    if client is None:
        conn.record(
            ConnectionEvent.Kind.REVOCATION_FAILED,
            actor,
            "The tokens could not be revoked at Bipsync (the app's application is not "
            "configured); they were deleted here.",
        )
        return conn
    outcome, sentence = revoke_quietly(conn.tenant, client, refresh_token, access_token)
    if outcome != "nothing":
        conn.record(
            ConnectionEvent.Kind.REVOKED
            if outcome == "revoked"
            else ConnectionEvent.Kind.REVOCATION_FAILED,
            actor,
            sentence,
        )
    return conn


def _client_of(conn: Connection) -> ClientConfig:
    if conn.kind_spec.own_application:
        return clients.client_for(
            conn.kind, client_id=conn.client_id, client_secret=conn.client_secret
        )
    return clients.client_for(conn.kind)


def _wipe(conn: Connection, actor: User) -> None:
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
