"""Fresh planner statistics for the research tables, kept off a run's own path.

A run that filled or emptied the tables leaves PostgreSQL planning on statistics that no longer
describe them; the next run of a just-filled table then plans badly (bench/README.md, "where a
first sync's time goes"). ``ANALYZE`` reads a sample of the *whole* table, so its cost grows with
every team's research, not with the run: 0.2 s after a first sync of 30,000 documents into an
empty table, 1.9 s into one of 240,000. So a run that changed many rows queues the refresh as a
task (:func:`refresh_if_stale`), and every slice checks before its first page that the
statistics are not stale, refreshing them itself when the task has not run yet: no run plans on
stale statistics, and no run waits for an ``ANALYZE`` it did not need.

Stale means at least :data:`ANALYZE_AFTER_CHANGES` rows, and a tenth of the table (the share at
which autovacuum would analyse it, ``autovacuum_analyze_scale_factor``), were inserted, updated
or deleted since our last refresh. PostgreSQL's own ``n_mod_since_analyze`` cannot say it: an
``ANALYZE`` of some columns, as ours is, does not reset it (only a whole-table one does; "The
Cumulative Statistics System", https://www.postgresql.org/docs/current/monitoring-stats.html).
So the refresh keeps the table's cumulative row counts (``n_tup_ins + n_tup_upd + n_tup_del``)
of its last pass in the cache; without them (a cache emptied) ``n_mod_since_analyze`` decides,
which at worst analyses once more.
"""

from __future__ import annotations

from django.core.cache import cache
from django.db import connection, transaction

from bipsync_partner.sync.engine.sql import analyze_statement
from bipsync_partner.sync.models import DocumentSighting, ResearchDocument

#: A run that created or deleted this many rows queues a refresh of the statistics.
ANALYZE_AFTER_CHANGES = 5000
#: ... and the statistics are stale once this share of the table changed too.
STALE_SHARE = 0.1

#: The columns queries filter and sort on: the statistics of lookup_fields (JSON) were half the
#: cost (0.37 of 0.75 s at 90,000 rows), and autovacuum's analyses still cover them.
TABLES = {
    ResearchDocument: (
        "team",
        "tenant",
        "deleted_at",
        "bipsync_modified",
        "bipsync_id",
        "content_type_bid",
        "author_bid",
        "title",
    ),
    DocumentSighting: ("document", "connection"),
}

#: One refresh at a time (pg_advisory_xact_lock's key: "bipsync-stats" as an int).
_LOCK_KEY = 0x62697073746174

_COUNTS = """
SELECT s.relname, s.n_tup_ins + s.n_tup_upd + s.n_tup_del, s.n_mod_since_analyze, c.reltuples
FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid
WHERE s.relname = ANY(%s)
"""


def _cache_key(table: str) -> str:
    # The counts are the database's: several databases may share one cache.
    return f"sync:statistics:{connection.settings_dict['NAME']}:{table}"


def _counts() -> dict[str, tuple[int, int, float]]:
    """Table -> (cumulative rows written, rows changed since its last analysis, rows)."""
    names = [model._meta.db_table for model in TABLES]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(_COUNTS, [names])
        return {name: (int(total), int(mods), float(rows)) for name, total, mods, rows in cursor}


def stale_tables() -> list[str]:
    """The research tables whose statistics are stale (see the module's docstring)."""
    stale = []
    for name, (total, mods, rows) in _counts().items():
        kept = cache.get(_cache_key(name))
        if kept is None:
            changed = mods
        elif int(kept) > total:  # the statistics were reset since: count from zero
            changed = total
        else:
            changed = total - int(kept)
        if changed >= ANALYZE_AFTER_CHANGES and changed >= STALE_SHARE * max(rows, 0.0):
            stale.append(name)
    return stale


def flush_counts() -> None:
    """Have this session's row counts reach ``pg_stat_user_tables`` as soon as it is idle.

    A session's counts are flushed at most once a second, and only after 10 s of idling
    otherwise (PostgreSQL 15 and later, ``pg_stat_force_next_flush``: "Statistics Functions",
    https://www.postgresql.org/docs/current/monitoring-stats.html), so a refresh queued as a run
    ends read the counts of before the run, found nothing stale, and left the ``ANALYZE`` to the
    next run's start (0.5-1.2 s of a 3 s first sync in the bench)."""
    # pg_version: the PostgreSQL backend's (the project runs on no other database).
    if int(getattr(connection, "pg_version", 0)) >= 150000:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_force_next_flush()")


def refresh_if_stale() -> list[str]:
    """Analyse the stale tables (the filtered columns only); the names of those analysed. Safe
    to run twice and concurrently: one refresh at a time, and the second finds nothing stale."""
    if not stale_tables():
        return []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        stale = stale_tables()  # a refresh that held the lock may have done it
        totals = _counts()
        for model, columns in TABLES.items():
            table = model._meta.db_table
            if table in stale:
                cursor.execute(analyze_statement(model, columns))
                cache.set(_cache_key(table), totals[table][0], timeout=None)
    return stale
