"""The resources read through GraphQL after the research: users, classifications, categories,
contacts, projects, note bodies and attachment metadata, one row per Bipsync id per tenant of a
team; the ids each page of a resource's scan saw; and the run's progress per resource."""

import django.contrib.postgres.fields
import django.db.models.deletion
import django.db.models.functions.text
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_members_invitations"),
        ("connections", "0005_manager_label"),
        ("sync", "0009_browser_covering_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="syncrun",
            name="resources",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.CreateModel(
            name="NoteBody",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("tenant", models.CharField(max_length=63)),
                ("bipsync_id", models.CharField(max_length=24, verbose_name="Bipsync id")),
                ("content_hash", models.CharField(max_length=64)),
                ("first_synced_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("changed_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("deleted_at", models.DateTimeField(blank=True, null=True)),
                ("content", models.TextField(blank=True)),
                (
                    "source_connection",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="connections.connection",
                    ),
                ),
                (
                    "team",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.team",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("team", "tenant", "bipsync_id"), name="one_note_body_per_tenant"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="ResourceScanPage",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("resource", models.CharField(max_length=32)),
                ("seq", models.PositiveIntegerField()),
                (
                    "ids",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.CharField(max_length=24), size=None
                    ),
                ),
                (
                    "run",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="resource_pages",
                        to="sync.syncrun",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("run", "resource", "seq"), name="one_resource_page_per_seq"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="SyncedAttachment",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("tenant", models.CharField(max_length=63)),
                ("bipsync_id", models.CharField(max_length=24, verbose_name="Bipsync id")),
                ("content_hash", models.CharField(max_length=64)),
                ("first_synced_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("changed_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("deleted_at", models.DateTimeField(blank=True, null=True)),
                ("document_bid", models.CharField(max_length=24, verbose_name="document")),
                ("file_name", models.CharField(blank=True, max_length=500)),
                ("length", models.BigIntegerField(blank=True, null=True)),
                ("content_type", models.CharField(blank=True, max_length=200)),
                ("bipsync_created", models.DateTimeField(blank=True, null=True)),
                (
                    "source_connection",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="connections.connection",
                    ),
                ),
                (
                    "team",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.team",
                    ),
                ),
            ],
            options={
                "ordering": ["file_name", "bipsync_id"],
                "indexes": [
                    models.Index(
                        fields=["team", "tenant", "document_bid"], name="attachment_by_document"
                    )
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("team", "tenant", "bipsync_id"),
                        name="one_synced_attachment_per_tenant",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="SyncedCategory",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("tenant", models.CharField(max_length=63)),
                ("bipsync_id", models.CharField(max_length=24, verbose_name="Bipsync id")),
                ("content_hash", models.CharField(max_length=64)),
                ("first_synced_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("changed_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("deleted_at", models.DateTimeField(blank=True, null=True)),
                ("name", models.CharField(blank=True, max_length=200)),
                ("ticker", models.CharField(blank=True, max_length=32)),
                (
                    "classification_bid",
                    models.CharField(blank=True, max_length=24, verbose_name="classification"),
                ),
                ("external_ids", models.JSONField(blank=True, default=dict)),
                (
                    "source_connection",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="connections.connection",
                    ),
                ),
                (
                    "team",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.team",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(
                        models.F("team"),
                        django.db.models.functions.text.Upper("ticker"),
                        name="category_by_ticker",
                    ),
                    models.Index(
                        models.F("team"),
                        django.db.models.functions.text.Upper("name"),
                        name="category_by_name",
                    ),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("team", "tenant", "bipsync_id"),
                        name="one_synced_category_per_tenant",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="SyncedClassification",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("tenant", models.CharField(max_length=63)),
                ("bipsync_id", models.CharField(max_length=24, verbose_name="Bipsync id")),
                ("content_hash", models.CharField(max_length=64)),
                ("first_synced_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("changed_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("deleted_at", models.DateTimeField(blank=True, null=True)),
                ("name", models.CharField(blank=True, max_length=200)),
                (
                    "source_connection",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="connections.connection",
                    ),
                ),
                (
                    "team",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.team",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("team", "tenant", "bipsync_id"),
                        name="one_synced_classification_per_tenant",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="SyncedContact",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("tenant", models.CharField(max_length=63)),
                ("bipsync_id", models.CharField(max_length=24, verbose_name="Bipsync id")),
                ("content_hash", models.CharField(max_length=64)),
                ("first_synced_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("changed_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("deleted_at", models.DateTimeField(blank=True, null=True)),
                ("name", models.CharField(blank=True, max_length=200)),
                ("email", models.CharField(blank=True, max_length=254)),
                ("external_ids", models.JSONField(blank=True, default=dict)),
                (
                    "source_connection",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="connections.connection",
                    ),
                ),
                (
                    "team",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.team",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("team", "tenant", "bipsync_id"),
                        name="one_synced_contact_per_tenant",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="SyncedProject",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("tenant", models.CharField(max_length=63)),
                ("bipsync_id", models.CharField(max_length=24, verbose_name="Bipsync id")),
                ("content_hash", models.CharField(max_length=64)),
                ("first_synced_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("changed_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("deleted_at", models.DateTimeField(blank=True, null=True)),
                ("name", models.CharField(blank=True, max_length=200)),
                ("stage", models.CharField(blank=True, max_length=200)),
                ("external_ids", models.JSONField(blank=True, default=dict)),
                (
                    "source_connection",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="connections.connection",
                    ),
                ),
                (
                    "team",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.team",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("team", "tenant", "bipsync_id"),
                        name="one_synced_project_per_tenant",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="SyncedUser",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("tenant", models.CharField(max_length=63)),
                ("bipsync_id", models.CharField(max_length=24, verbose_name="Bipsync id")),
                ("content_hash", models.CharField(max_length=64)),
                ("first_synced_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("changed_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("deleted_at", models.DateTimeField(blank=True, null=True)),
                ("name", models.CharField(blank=True, max_length=200)),
                ("email", models.CharField(blank=True, max_length=254)),
                (
                    "source_connection",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="connections.connection",
                    ),
                ),
                (
                    "team",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.team",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("team", "tenant", "bipsync_id"), name="one_synced_user_per_tenant"
                    )
                ],
            },
        ),
    ]
