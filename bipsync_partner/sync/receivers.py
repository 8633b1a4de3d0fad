"""How the sync reacts to the connections app's signals and to deletions (connected in
``SyncConfig.ready``).

The database does not check the sightings' foreign keys (see
:class:`~bipsync_partner.sync.models.DocumentSighting`), so a deletion holds what a page
could still write against: a connection is locked ``FOR UPDATE`` before Django removes its
sightings (a page holds it ``FOR KEY SHARE`` while it writes), and a team's research that a page
committed after Django listed the team's rows is removed with the team.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, pre_delete
from django.dispatch import receiver

from accounts.models import Team
from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.signals import connection_disconnected
from bipsync_partner.sync.models import ResearchDocument


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


@receiver(post_delete, sender=Team, dispatch_uid="sync.remove_team_rows_left_behind")
def remove_team_rows_left_behind(sender: object, instance: Team, **_: Any) -> None:
    # The research's team key is not checked by the database either: documents a page committed
    # after Django listed the team's (its connections are locked since, above) would outlive
    # the team. Usually none: one query.
    ResearchDocument.objects.filter(team_id=instance.pk).delete()
