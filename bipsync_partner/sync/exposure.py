"""What a connection alone exposes, and its removal when the connection is disconnected.

A disconnect means the customer withdrew this access: the documents that only this connection
could see go (with their history), and the connection's sightings of documents other
connections also see. The connections app announces the disconnect with
:data:`~bipsync_partner.connections.signals.connection_disconnected` (it knows nothing of the
sync); :mod:`bipsync_partner.sync.receivers` queues :func:`forget_connection` for it.
"""

from __future__ import annotations

import logging
import uuid

from django.db import connection as db
from django.db import models, transaction

from bipsync_partner.connections.models import Connection
from bipsync_partner.sqlnames import column as _column
from bipsync_partner.sqlnames import table as _table
from bipsync_partner.sync.engine.sql import forget_statement, lock_sighted_statement
from bipsync_partner.sync.models import DocumentChange, DocumentSighting, ResearchDocument

log = logging.getLogger(__name__)


def documents_only_visible_through(connection: Connection) -> int:
    """How many documents only ``connection`` sees: no other connection of the team that is
    not disconnected has a sighting of them. They disappear when it is disconnected."""
    others = (
        DocumentSighting.objects.filter(document=models.OuterRef("document"))
        .exclude(connection=connection)
        .exclude(connection__status=Connection.Status.DISCONNECTED)
    )
    return (
        DocumentSighting.objects.filter(connection=connection)
        .exclude(models.Exists(others))
        .count()
    )


def forget_connection(connection_id: uuid.UUID | str) -> int:
    """Remove a disconnected connection's sightings and the documents only it saw; how many
    documents went. Does nothing for a connection that is not disconnected (it was reconnected
    before the task ran), so it is safe to run twice or late."""
    with transaction.atomic():
        conn = (
            Connection.objects.select_for_update()
            .filter(pk=connection_id, status=Connection.Status.DISCONNECTED)
            .first()
        )
        if conn is None:
            return 0
        with db.cursor() as cursor:
            # Every document the connection sees, locked before anything goes: a page of
            # another connection sighting one of them for the first time holds it FOR KEY
            # SHARE until it commits (and then this statement's snapshot sees its sighting),
            # or waits for this transaction and finds the document gone (and stores it
            # again). The removal below is a later statement, so it reads a snapshot taken
            # after these locks were granted. In id order, as pages lock theirs.
            cursor.execute(lock_sighted_statement(ResearchDocument), {"connection": conn.pk})
            cursor.execute(forget_statement(ResearchDocument), {"connection": conn.pk})
            row = cursor.fetchone()
    removed = int(row[0]) if row else 0
    log.info("Disconnected connection %s: %d documents only it saw were removed", conn.pk, removed)
    return removed


def team_research_removal(team_id: int) -> None:
    """Remove a team's research, its history and sightings (the team is being deleted, and its
    connections are locked)."""
    documents = _table(ResearchDocument)
    team = _column(ResearchDocument, "team")
    ids = f"SELECT id FROM {documents} WHERE {team} = %s"  # noqa: S608 (the models' names)
    with db.cursor() as cursor:
        for model in (DocumentChange, DocumentSighting):
            cursor.execute(
                f"DELETE FROM {_table(model)} WHERE {_column(model, 'document')} IN ({ids})",  # noqa: S608
                [team_id],
            )
        cursor.execute(f"DELETE FROM {documents} WHERE {team} = %s", [team_id])  # noqa: S608
