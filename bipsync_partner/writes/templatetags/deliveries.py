"""``{% connection_deliveries connection %}``: the latest writes of one connection, for its page.

A tag rather than a line in the connection view, so that the connections app needs no change
to show them; the rows are the connection's history of writes (``Write.connection``).
"""

from __future__ import annotations

from typing import Any, Final

from django import template

from bipsync_partner.connections.models import Connection
from bipsync_partner.writes.links import delivered_link
from bipsync_partner.writes.models import Write

register = template.Library()

SHOWN: Final = 10


@register.inclusion_tag("writes/_connection_writes.html")
def connection_deliveries(connection: Connection) -> dict[str, Any]:
    writes = list(Write.objects.filter(connection=connection).order_by("-id")[:SHOWN])
    for write in writes:
        write.bipsync_link = delivered_link(write)  # type: ignore[attr-defined]
    return {
        "connection": connection,
        "writes": writes,
        "total": Write.objects.filter(connection=connection).count() if writes else 0,
    }
