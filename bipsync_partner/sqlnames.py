"""Names for hand-written SQL, taken from the models' own metadata and quoted by the backend, so
that a statement built from them follows the models (a renamed table or column) and never
carries input. Used by the statements written by hand for speed: the token service's
(connections/fastdb.py), the sync engine's (sync/engine/sql.py) and the events' claim
(events/claims.py)."""

from __future__ import annotations

from django.db import connection, models


def quoted(name: str) -> str:
    return connection.ops.quote_name(name)


def table(model: type[models.Model]) -> str:
    return quoted(model._meta.db_table)


def column(model: type[models.Model], name: str) -> str:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field), name
    return quoted(field.column)
