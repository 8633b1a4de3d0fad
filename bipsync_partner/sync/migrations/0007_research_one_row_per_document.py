"""One research row per Bipsync document per tenant of a team, with the connections that see it
beside it (sightings) and the changes syncs saw (history).

The data step folds the per-connection copies of a document into one row: the kept copy is a
live one if there is any, else the newest by Bipsync's ``modified``; every live copy of a
connection that is not disconnected becomes a sighting of it (a disconnected connection's
research was already hidden, and is what a disconnect now removes). A kept row that no connection
sees any more is marked deleted. The fold is plain SQL, set-based, so it takes seconds at a
million rows rather than a Python loop's hours.
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

FOLD = """
-- Foreign keys checked as each statement ends: the ALTER TABLEs that follow in this transaction
-- refuse a table with deferred checks pending.
SET CONSTRAINTS ALL IMMEDIATE;

CREATE TEMPORARY TABLE research_fold ON COMMIT DROP AS
SELECT id, connection_id, deleted_at, first_synced_at,
       first_value(id) OVER (
           PARTITION BY team_id, tenant, bipsync_id
           ORDER BY (deleted_at IS NULL) DESC, bipsync_modified DESC NULLS LAST,
                    changed_at DESC, id
       ) AS keeper
FROM sync_researchdocument;

UPDATE sync_researchdocument AS d
SET source_connection_id = d.connection_id,
    first_synced_at = f.first_synced_at
FROM (SELECT keeper, min(first_synced_at) AS first_synced_at
      FROM research_fold GROUP BY keeper) AS f
WHERE d.id = f.keeper;

INSERT INTO sync_documentsighting (document_id, connection_id, first_seen_at)
SELECT f.keeper, f.connection_id, min(f.first_synced_at)
FROM research_fold AS f
JOIN connections_connection AS c ON c.id = f.connection_id
WHERE f.deleted_at IS NULL AND c.status <> 'disconnected'
GROUP BY f.keeper, f.connection_id;

UPDATE sync_researchdocument AS d
SET deleted_at = CASE
        WHEN EXISTS (SELECT 1 FROM sync_documentsighting AS s WHERE s.document_id = d.id)
        THEN NULL
        ELSE coalesce(d.deleted_at, now())
    END
WHERE d.id IN (SELECT keeper FROM research_fold);

DELETE FROM sync_researchdocument AS d
USING research_fold AS f
WHERE d.id = f.id AND f.id <> f.keeper;
"""


class Migration(migrations.Migration):
    # The fold and the schema change commit together.
    atomic = True

    dependencies = [
        ("accounts", "0001_initial"),
        ("connections", "0004_meta_tenant_metadata"),
        ("sync", "0006_sync_scan_completeness"),
    ]

    operations = [
        migrations.AddField(
            model_name="researchdocument",
            name="source_connection",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="connections.connection",
            ),
        ),
        migrations.CreateModel(
            name="DocumentSighting",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "document",
                        "connection",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "document",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="sightings",
                        to="sync.researchdocument",
                    ),
                ),
                (
                    "connection",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="connections.connection",
                    ),
                ),
                ("first_seen_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                "indexes": [
                    models.Index(
                        fields=["connection", "document"], name="sighting_by_connection"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="DocumentChange",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("seen_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("changes", models.JSONField(default=dict)),
                (
                    "connection",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="connections.connection",
                    ),
                ),
                (
                    "document",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="changes",
                        to="sync.researchdocument",
                    ),
                ),
            ],
            options={
                "ordering": ["-seen_at", "-id"],
                "indexes": [
                    models.Index(fields=["document", "-seen_at"], name="document_history")
                ],
            },
        ),
        migrations.RunSQL(FOLD, reverse_sql=migrations.RunSQL.noop, elidable=False),
        migrations.RemoveConstraint(
            model_name="researchdocument",
            name="one_document_per_connection",
        ),
        migrations.RemoveField(
            model_name="researchdocument",
            name="connection",
        ),
        migrations.AddConstraint(
            model_name="researchdocument",
            constraint=models.UniqueConstraint(
                fields=("team", "tenant", "bipsync_id"), name="one_document_per_tenant"
            ),
        ),
        migrations.AlterField(
            model_name="researchdocument",
            name="deleted_at",
            field=models.DateTimeField(
                blank=True,
                help_text="Set when no connection of the team sees it any more.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="syncrun",
            name="tenant_was_empty",
            field=models.BooleanField(
                default=False,
                help_text="The team had no synced documents of this tenant when the run began.",
            ),
        ),
        migrations.AlterField(
            model_name="syncrun",
            name="first_scan",
            field=models.BooleanField(
                default=False,
                help_text="The connection saw no synced documents when the run began.",
            ),
        ),
    ]
