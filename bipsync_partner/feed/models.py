"""One row per change of a synced row, written by PostgreSQL triggers (:mod:`.triggers`) in the
transaction that makes the change."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Expression


class Xid8Field(models.BigIntegerField):  # type: ignore[type-arg]
    """A PostgreSQL ``xid8`` (a 64-bit transaction id that never wraps around). Django has no
    field for it; it reads as an int."""

    def db_type(self, connection: BaseDatabaseWrapper) -> str:
        return "xid8"

    def from_db_value(
        self, value: Any, expression: Expression, connection: BaseDatabaseWrapper
    ) -> int | None:
        return None if value is None else int(value)

    def get_db_prep_value(
        self, value: Any, connection: BaseDatabaseWrapper, prepared: bool = False
    ) -> Any:
        return None if value is None else str(int(value))


class FeedEntry(models.Model):
    class Action(models.TextChoices):
        CREATED = "created", "Created"
        CHANGED = "changed", "Changed"
        DELETED = "deleted", "Deleted"

    id = models.BigAutoField(primary_key=True)
    # No foreign-key check: PostgreSQL checks one row at a time, and the triggers write a whole
    # sync page per statement. A team's entries go with it by the trigger on accounts_team
    # (see .triggers), after its synced rows' own deletions have written theirs.
    team = models.ForeignKey(
        "accounts.Team", models.DO_NOTHING, related_name="+", db_constraint=False, db_index=False
    )
    #: "research", and the names of the other synced tables' resources.
    resource = models.CharField(max_length=32)
    tenant = models.CharField(max_length=63)
    bipsync_id = models.CharField("Bipsync id", max_length=24)
    action = models.CharField(max_length=8, choices=Action.choices)
    #: The id of the changed row in its table (it may be gone: deleted).
    row_id = models.BigIntegerField()
    #: The writing transaction; the feed's order is (txid, id), see .reading.
    txid = Xid8Field(db_default=models.Func(function="pg_current_xact_id"), editable=False)
    created = models.DateTimeField(db_default=models.Func(function="now"), editable=False)

    class Meta:
        verbose_name_plural = "feed entries"
        indexes = [models.Index(fields=["team", "txid", "id"], name="feed_by_team")]

    def __str__(self) -> str:
        return f"{self.resource} {self.bipsync_id} {self.action}"
