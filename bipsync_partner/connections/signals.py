"""Signals of the connections app, for features built on top of it.

The connections app knows nothing of what is built on it (the sync imports connections, never the
other way round); these signals are how its pages and changes reach those features.

``connection_needs_reconnect`` is sent (after the change is committed) when the token service
moves a connection to ``needs_reconnect``; receivers get ``connection`` and ``reason`` (the
sentence stored as ``last_error_message``). The admin email and the in-app banner listen to it.

``history_appended`` is sent by the token service inside its own transaction, right after it
writes a line of a connection's history by hand (``fastdb.append_event``, so no ``post_save``),
under the same savepoint: receivers get ``connection``, ``kind`` and ``message``, and what they
write commits with that line, or is rolled back with it if a receiver fails (the tokens written
before it stay). The events outbox listens to it, for ``connection.needs_reconnect``.

``connection_reconnected`` is sent after the commit of a reconnect (new tokens on an existing
connection, whatever its kind); receivers get ``connection`` and ``actor`` (who reconnected, or
None). The sync queues a catch-up run.

``disconnect_consequences`` is sent by the disconnect confirmation page; receivers get
``connection`` and return a list of sentences saying what else disconnecting it takes away
(the sync: the research that disappears). :func:`disconnect_sentences` collects them.

``sync_summaries`` is sent by the connections list; receivers get ``connections`` (a list) and
return ``{connection id: SyncSummary}``. :func:`summaries_of` collects them.

``connection_disconnected`` is sent (after the disconnect is committed) when a connection is
disconnected; receivers get ``connection``. The sync listens to it: the customer withdrew the
access, so what only that connection could see is removed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast
from uuid import UUID

from django.dispatch import Signal

from accounts.models import User
from bipsync_partner.connections.models import Connection

log = logging.getLogger(__name__)

connection_needs_reconnect: Signal = Signal()
history_appended: Signal = Signal()
connection_reconnected: Signal = Signal()
disconnect_consequences: Signal = Signal()
sync_summaries: Signal = Signal()
connection_disconnected: Signal = Signal()


@dataclass(frozen=True)
class SyncSummary:
    """What the connections list shows of a connection's syncing."""

    last_sync_at: datetime | None
    #: How the last finished run ended ("Succeeded", "Failed"); empty before the first.
    last_sync_outcome: str
    sentence: str
    history_url: str


def announce_reconnect(connection: Connection, actor: User | None) -> None:
    """Tell the features built on connections that ``connection`` works again. A receiver's
    failure (Redis away, say) is logged and does not undo or hide the reconnect."""
    responses = connection_reconnected.send_robust(
        sender=Connection, connection=connection, actor=actor
    )
    for receiver, response in responses:
        if isinstance(response, Exception):
            log.error(
                "A receiver of the reconnect of %r failed: %s",
                connection,
                receiver,
                exc_info=response,
            )


def disconnect_sentences(connection: Connection) -> list[str]:
    sentences: list[str] = []
    for _, response in disconnect_consequences.send(sender=Connection, connection=connection):
        sentences.extend(cast(list[str], response))
    return sentences


def summaries_of(connections: Sequence[Connection]) -> dict[UUID, SyncSummary]:
    found: dict[UUID, SyncSummary] = {}
    for _, response in sync_summaries.send(sender=Connection, connections=list(connections)):
        found.update(cast(dict[UUID, SyncSummary], response))
    return found
