"""The research browser's indexes: pg_trgm for "title contains", and its order and filters.

Built with CREATE INDEX CONCURRENTLY, so that a deployment onto a team with a million documents
does not hold up the sync's writes while they build (hence ``atomic = False``).
"""

import django.contrib.postgres.indexes
from django.contrib.postgres.operations import AddIndexConcurrently, TrigramExtension
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("sync", "0007_research_one_row_per_document"),
    ]

    operations = [
        TrigramExtension(),
        # The planner's guess of how many titles contain a word comes from the column's
        # statistics; with the default 100-entry sample it took a word in 8 % of a million titles
        # for one in 2,000, and read all 80,000 matches through the trigram index to sort them
        # (600 ms) instead of walking the newest first (bench/README.md, "Research browser").
        migrations.RunSQL(
            "ALTER TABLE sync_researchdocument ALTER COLUMN title SET STATISTICS 1000",
            "ALTER TABLE sync_researchdocument ALTER COLUMN title SET STATISTICS -1",
        ),
        AddIndexConcurrently(
            model_name="researchdocument",
            index=models.Index(
                models.F("team"),
                models.OrderBy(models.F("bipsync_modified"), descending=True),
                models.OrderBy(models.F("id"), descending=True),
                condition=models.Q(("deleted_at__isnull", True)),
                name="research_recent",
            ),
        ),
        AddIndexConcurrently(
            model_name="researchdocument",
            index=models.Index(
                models.F("team"),
                models.F("content_type_bid"),
                models.OrderBy(models.F("bipsync_modified"), descending=True),
                models.OrderBy(models.F("id"), descending=True),
                condition=models.Q(("deleted_at__isnull", True)),
                name="research_by_type",
            ),
        ),
        AddIndexConcurrently(
            model_name="researchdocument",
            index=models.Index(
                models.F("team"),
                models.F("author_bid"),
                models.OrderBy(models.F("bipsync_modified"), descending=True),
                models.OrderBy(models.F("id"), descending=True),
                condition=models.Q(("deleted_at__isnull", True)),
                name="research_by_author",
            ),
        ),
        AddIndexConcurrently(
            model_name="researchdocument",
            index=models.Index(
                condition=models.Q(
                    ("deleted_at__isnull", True), models.Q(("author_name", ""), _negated=True)
                ),
                fields=["team", "author_bid", "author_name"],
                name="research_author_names",
            ),
        ),
        AddIndexConcurrently(
            model_name="researchdocument",
            index=django.contrib.postgres.indexes.GinIndex(
                condition=models.Q(("deleted_at__isnull", True)),
                fields=["title"],
                opclasses=["gin_trgm_ops"],
                name="research_title_trgm",
            ),
        ),
    ]
