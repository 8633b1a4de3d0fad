"""How the sync reacts to the connections app's signals and to deletions (connected in
``SyncConfig.ready``).

The database does not check the sightings' foreign keys (see
:class:`~bipsync_partner.sync.models.DocumentSighting`), so a deletion holds what a page
could still write against: a connection is locked ``FOR UPDATE`` before Django removes its
sightings (a page holds it ``FOR KEY SHARE`` while it writes), and a team's research is removed
after its connections are locked, including what a page committed after Django listed the
team's rows.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import pre_delete
from django.dispatch import receiver

from accounts.models import Team
from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.signals import connection_disconnected
from bipsync_partner.sync.exposure import team_research_removal


@receiver(connection_disconnected, dispatch_uid="sync.forget_disconnected_connection")
def forget_disconnected_connection(sender: object, connection: Connection, **_: Any) -> None:
    # Imported here: the tasks module loads the engine, which the app registry must be ready for.
    from bipsync_partner.sync.tasks import forget_connection_task

    pk = str(connection.pk)
    transaction.on_commit(lambda: forget_connection_task.delay(pk))


@receiver(pre_delete, sender=Connection, dispatch_uid="sync.hold_deleted_connection")
def hold_deleted_connection(sender: object, instance: Connection, **_: Any) -> None:
    # Sent inside the deletion's transaction, before Django deletes anything: a page of this
    # connection in flight commits first, and its sightings are among those deleted; a page
    # after it waits, then finds the connection gone and writes nothing.
    list(Connection.objects.select_for_update().filter(pk=instance.pk).values_list("pk"))


@receiver(pre_delete, sender=Team, dispatch_uid="sync.remove_team_research")
def remove_team_research(sender: object, instance: Team, **_: Any) -> None:
    # Sent after the team's connections were locked (Django signals a deletion's models in the
    # order it deletes them: a team's after its connections). The research's team key is not
    # checked by the database either, so documents a page committed after Django listed the
    # team's would outlive it: all of them go here, in three statements, and Django finds
    # nothing left to delete. Before the team's row goes, so that its feed trigger removes the
    # entries these deletions write.
    team_research_removal(instance.pk)
