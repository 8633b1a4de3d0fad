"""The triggers that write the feed, as migration operations.

Each synced table gets three statement-level triggers with transition tables (``REFERENCING NEW
TABLE AS ...``, https://www.postgresql.org/docs/current/sql-createtrigger.html): a sync page of a
hundred rows, written by one statement, costs one ``INSERT ... SELECT`` into the feed, not a
hundred. They run in the writing transaction, so an entry commits (or rolls back) with its
change, and the sync engine knows nothing of the feed.

The functions read the columns every synced table shares (``id``, ``team_id``, ``tenant``,
``bipsync_id``, ``content_hash``, ``deleted_at``); the resource's name is the trigger's argument.
A soft delete (``deleted_at`` set) is ``deleted``, a row coming back ``created``, and an update
is ``changed`` only when its content hash moved (the sync's own test of a change: an update of
bookkeeping columns alone, such as the writing connection, is no change of the document).

Adding a synced table to the feed is one operation in its migration: ``track(table, resource)``.
"""

# The SQL is assembled from table names and connection kinds written in migrations (the kinds
# checked as identifiers), never from input.
# ruff: noqa: S608

from __future__ import annotations

from django.db import migrations

FUNCTIONS = """
CREATE FUNCTION feed_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO feed_feedentry (team_id, resource, tenant, bipsync_id, action, row_id)
    SELECT n.team_id, TG_ARGV[0], n.tenant, n.bipsync_id, 'created', n.id
    FROM feed_new AS n WHERE n.deleted_at IS NULL
    ORDER BY n.id;
    RETURN NULL;
END $$;

CREATE FUNCTION feed_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO feed_feedentry (team_id, resource, tenant, bipsync_id, action, row_id)
    SELECT team_id, TG_ARGV[0], tenant, bipsync_id, action, id FROM (
        SELECT n.team_id, n.tenant, n.bipsync_id, n.id,
               CASE
                   WHEN n.deleted_at IS NOT NULL AND o.deleted_at IS NULL THEN 'deleted'
                   WHEN n.deleted_at IS NULL AND o.deleted_at IS NOT NULL THEN 'created'
                   WHEN n.deleted_at IS NULL AND n.content_hash IS DISTINCT FROM o.content_hash
                       THEN 'changed'
               END AS action
        FROM feed_new AS n JOIN feed_old AS o ON o.id = n.id
    ) AS changes
    WHERE action IS NOT NULL
    ORDER BY id;
    RETURN NULL;
END $$;

CREATE FUNCTION feed_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A row already marked deleted was announced then.
    INSERT INTO feed_feedentry (team_id, resource, tenant, bipsync_id, action, row_id)
    SELECT o.team_id, TG_ARGV[0], o.tenant, o.bipsync_id, 'deleted', o.id
    FROM feed_old AS o WHERE o.deleted_at IS NULL
    ORDER BY o.id;
    RETURN NULL;
END $$;

-- A team's entries go with the team: after its synced rows' deletions, which wrote entries.
CREATE FUNCTION feed_team_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM feed_feedentry WHERE team_id IN (SELECT id FROM feed_old);
    RETURN NULL;
END $$;

CREATE TRIGGER feed_team_deleted AFTER DELETE ON accounts_team
    REFERENCING OLD TABLE AS feed_old
    FOR EACH STATEMENT EXECUTE FUNCTION feed_team_deleted();
"""

DROP_FUNCTIONS = """
DROP TRIGGER IF EXISTS feed_team_deleted ON accounts_team;
DROP FUNCTION IF EXISTS feed_team_deleted();
DROP FUNCTION IF EXISTS feed_deleted();
DROP FUNCTION IF EXISTS feed_updated();
DROP FUNCTION IF EXISTS feed_inserted();
"""


def functions() -> migrations.RunSQL:
    """The trigger functions (once, in the feed's first migration)."""
    return migrations.RunSQL(FUNCTIONS, DROP_FUNCTIONS, elidable=False)


def track(table: str, resource: str) -> migrations.RunSQL:
    """Write the feed from ``table``'s changes, as ``resource``. ``table`` and ``resource`` are
    names written in a migration, never input."""
    create = f"""
CREATE TRIGGER feed_inserted AFTER INSERT ON {table}
    REFERENCING NEW TABLE AS feed_new
    FOR EACH STATEMENT EXECUTE FUNCTION feed_inserted('{resource}');
CREATE TRIGGER feed_updated AFTER UPDATE ON {table}
    REFERENCING OLD TABLE AS feed_old NEW TABLE AS feed_new
    FOR EACH STATEMENT EXECUTE FUNCTION feed_updated('{resource}');
CREATE TRIGGER feed_deleted AFTER DELETE ON {table}
    REFERENCING OLD TABLE AS feed_old
    FOR EACH STATEMENT EXECUTE FUNCTION feed_deleted('{resource}');
"""
    drop = "\n".join(
        f"DROP TRIGGER IF EXISTS feed_{event} ON {table};"
        for event in ("inserted", "updated", "deleted")
    )
    return migrations.RunSQL(create, drop, elidable=False)


def track_team_visibility(team_wide: tuple[str, ...]) -> migrations.RunSQL:
    """Research entries for what an API key of the team may read (a document some team-wide
    connection of the team sees, disconnected ones excepted:
    ``bipsync_partner.connections.visibility.team_research_sources``), written from the
    sightings' changes when that alone changes, the document's row staying as it was:

    - ``changed`` when a team-wide connection sees a document no other one did (one that only a
      member's own connection saw until now), so that a consumer reads it;
    - ``deleted`` when the last team-wide connection that saw a document stops seeing it while a
      member's own still does, so that a consumer drops it.

    A document written in the same transaction has an entry of its own already (the first sync
    of a team-wide connection inserts its documents and their sightings in one statement): its
    row's ``xmin`` (``written_by``) is the transaction's id, or, written under a savepoint (whose rows carry the
    savepoint's own id), the feed holds an entry of this transaction for it. And
    one that no connection sees any more is deleted or marked deleted, which writes its own.
    ``team_wide`` is the kinds of connection that are team-wide, as this migration knew them
    (written in the migration, never input)."""
    assert all(kind.isidentifier() for kind in team_wide), team_wide
    kinds = ", ".join(f"'{kind}'" for kind in team_wide)
    # Every look-up is a probe per sighting (``OFFSET 0`` keeps PostgreSQL from turning it into
    # a join over the whole table, which it plans for a table whose statistics are still empty,
    # a fresh database's first sync, making each page's trigger read every earlier page's rows).
    live_team_wide = f"""
          SELECT 1 FROM sync_documentsighting AS s
          JOIN connections_connection AS o ON o.id = s.connection_id
          WHERE s.document_id = d.id AND s.connection_id <> n.connection_id
            AND o.kind IN ({kinds}) AND o.status <> 'disconnected'
          OFFSET 0"""
    create = f"""
CREATE FUNCTION feed_team_sighted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A member's own connection changes nothing the team reads: no look-up per row.
    IF NOT EXISTS (
        SELECT 1 FROM (SELECT DISTINCT connection_id FROM feed_new) AS n
        JOIN connections_connection AS c ON c.id = n.connection_id
        WHERE c.kind IN ({kinds}) AND c.status <> 'disconnected'
    ) THEN
        RETURN NULL;
    END IF;
    INSERT INTO feed_feedentry (team_id, resource, tenant, bipsync_id, action, row_id)
    SELECT d.team_id, 'research', d.tenant, d.bipsync_id, 'changed', d.id
    FROM (SELECT DISTINCT document_id, connection_id FROM feed_new) AS n
    JOIN connections_connection AS c ON c.id = n.connection_id
    CROSS JOIN LATERAL (
        SELECT r.id, r.team_id, r.tenant, r.bipsync_id, r.deleted_at, r.xmin AS written_by
        FROM sync_researchdocument AS r WHERE r.id = n.document_id OFFSET 0
    ) AS d
    WHERE c.kind IN ({kinds}) AND c.status <> 'disconnected'
      AND d.deleted_at IS NULL
      AND d.written_by <> pg_current_xact_id()::xid
      AND NOT EXISTS (
          SELECT 1 FROM feed_feedentry AS f
          WHERE f.team_id = d.team_id AND f.txid = pg_current_xact_id()
            AND f.resource = 'research' AND f.row_id = d.id
          OFFSET 0)
      AND NOT EXISTS ({live_team_wide})
    ORDER BY d.id;
    RETURN NULL;
END $$;

CREATE FUNCTION feed_team_unsighted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO feed_feedentry (team_id, resource, tenant, bipsync_id, action, row_id)
    SELECT d.team_id, 'research', d.tenant, d.bipsync_id, 'deleted', d.id
    FROM (SELECT DISTINCT document_id, connection_id FROM feed_old) AS n
    LEFT JOIN connections_connection AS c ON c.id = n.connection_id
    CROSS JOIN LATERAL (
        SELECT r.id, r.team_id, r.tenant, r.bipsync_id, r.deleted_at, r.xmin AS written_by
        FROM sync_researchdocument AS r WHERE r.id = n.document_id OFFSET 0
    ) AS d
    WHERE (c.id IS NULL OR c.kind IN ({kinds}))
      AND d.deleted_at IS NULL
      AND NOT EXISTS ({live_team_wide})
    ORDER BY d.id;
    RETURN NULL;
END $$;

CREATE TRIGGER feed_team_sighted AFTER INSERT ON sync_documentsighting
    REFERENCING NEW TABLE AS feed_new
    FOR EACH STATEMENT EXECUTE FUNCTION feed_team_sighted();
CREATE TRIGGER feed_team_unsighted AFTER DELETE ON sync_documentsighting
    REFERENCING OLD TABLE AS feed_old
    FOR EACH STATEMENT EXECUTE FUNCTION feed_team_unsighted();
"""
    drop = """
DROP TRIGGER IF EXISTS feed_team_unsighted ON sync_documentsighting;
DROP TRIGGER IF EXISTS feed_team_sighted ON sync_documentsighting;
DROP FUNCTION IF EXISTS feed_team_unsighted();
DROP FUNCTION IF EXISTS feed_team_sighted();
"""
    return migrations.RunSQL(create, drop, elidable=False)
