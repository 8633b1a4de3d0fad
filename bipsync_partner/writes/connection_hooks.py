"""The writes' answer to the connections app's signals: writes that wait for a connection go as
soon as it is reconnected. Connected in :meth:`WritesConfig.ready`."""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import receiver

from accounts.models import User
from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.signals import connection_reconnected
from bipsync_partner.writes import queueing

log = logging.getLogger(__name__)


@receiver(connection_reconnected, dispatch_uid="writes.resume_after_reconnect")
def resume_after_reconnect(
    sender: Any, connection: Connection, actor: User | None = None, **kwargs: Any
) -> None:
    """A write refused because its connection needed reconnecting waits in its retry's backoff
    (up to ``WRITES_BACKOFF_CAP_MS``); the person who reconnected expects it to go now."""
    resumed = queueing.resume_through(connection)
    if resumed:
        log.info("%d writes through %r are due again after its reconnect", resumed, connection)
