"""How much of the synced research a connection alone makes visible: the figure the disconnect
confirmation shows ("what research disappears")."""

from __future__ import annotations

from bipsync_partner.connections.models import Connection
from bipsync_partner.sync.models import ResearchDocument


def documents_only_visible_through(connection: Connection) -> int:
    """The documents people would no longer see once ``connection`` stops counting.

    Research is stored per connection (one copy of a document for each connection that read
    it), and the research browser shows a connection's copies only while it works
    (:mod:`bipsync_partner.connections.visibility`). So every live (not deleted) document this
    connection synced disappears from the browser with it, even when another connection holds a
    copy of its own.
    """
    return ResearchDocument.objects.filter(connection=connection, deleted_at__isnull=True).count()
