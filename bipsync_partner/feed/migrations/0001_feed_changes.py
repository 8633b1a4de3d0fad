"""The change feed's table and the triggers that write it from the research table."""

import bipsync_partner.feed.models
from bipsync_partner.feed import triggers
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("accounts", "0002_members_invitations"),
        ("sync", "0008_browser_title_trigram"),
    ]

    operations = [
        migrations.CreateModel(
            name="FeedEntry",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("resource", models.CharField(max_length=32)),
                ("tenant", models.CharField(max_length=63)),
                ("bipsync_id", models.CharField(max_length=24, verbose_name="Bipsync id")),
                (
                    "action",
                    models.CharField(
                        choices=[
                            ("created", "Created"),
                            ("changed", "Changed"),
                            ("deleted", "Deleted"),
                        ],
                        max_length=8,
                    ),
                ),
                ("row_id", models.BigIntegerField()),
                (
                    "txid",
                    bipsync_partner.feed.models.Xid8Field(
                        db_default=models.Func(function="pg_current_xact_id"), editable=False
                    ),
                ),
                (
                    "created",
                    models.DateTimeField(db_default=models.Func(function="now"), editable=False),
                ),
                (
                    "team",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="accounts.team",
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "feed entries",
                "indexes": [models.Index(fields=["team", "txid", "id"], name="feed_by_team")],
            },
        ),
        triggers.functions(),
        triggers.track("sync_researchdocument", "research"),
    ]
