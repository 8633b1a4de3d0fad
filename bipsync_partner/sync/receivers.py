"""How the sync reacts to the connections app's signals (connected in ``SyncConfig.ready``)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.dispatch import receiver

from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.signals import connection_disconnected


@receiver(connection_disconnected, dispatch_uid="sync.forget_disconnected_connection")
def forget_disconnected_connection(sender: object, connection: Connection, **_: Any) -> None:
    # Imported here: the tasks module loads the engine, which the app registry must be ready for.
    from bipsync_partner.sync.tasks import forget_connection_task

    pk = str(connection.pk)
    transaction.on_commit(lambda: forget_connection_task.delay(pk))
