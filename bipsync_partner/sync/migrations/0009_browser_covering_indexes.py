"""The research browser's indexes, leaner to write and cheaper to read.

- ``research_browse`` (team, deleted_at, modified) is dropped: ``research_recent`` (team,
  modified, id on live rows, 0008) serves the browser's order and its live-rows filter, and no
  query used the older index any more (0 scans over the research browser benchmark,
  bench/README.md), while every document insert and update still paid for it.
- The three ordered indexes carry the title (``INCLUDE (title)``): a title search within the
  browser's order, a content type or an author is then checked in the index (an index-only
  scan), and the table is read only for the rows a page shows. Counting the 423 matches of a
  common word among the 4,883 documents of one content type read 4,883 table rows (13-24 ms);
  from the index it takes 5-8 ms (bench/README.md, "Research browser").

Each ordered index is built beside the one it replaces under a new name, the old one dropped and
the new one renamed, so that the browser always has one to use; every build and drop is
CONCURRENTLY, so the sync's writes are never held up (hence ``atomic = False``).
"""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models
from django.db.migrations.operations.base import Operation


def ordered(name: str, *leading: str) -> models.Index:
    return models.Index(
        models.F("team"),
        *(models.F(column) for column in leading),
        models.OrderBy(models.F("bipsync_modified"), descending=True),
        models.OrderBy(models.F("id"), descending=True),
        condition=models.Q(("deleted_at__isnull", True)),
        include=("title",),
        name=name,
    )


def replaced(name: str, *leading: str) -> list[Operation]:
    building = f"{name}_new"
    return [
        AddIndexConcurrently(model_name="researchdocument", index=ordered(building, *leading)),
        RemoveIndexConcurrently(model_name="researchdocument", name=name),
        migrations.RenameIndex(model_name="researchdocument", new_name=name, old_name=building),
    ]


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("sync", "0008_browser_title_trigram"),
    ]

    operations = [
        RemoveIndexConcurrently(model_name="researchdocument", name="research_browse"),
        *replaced("research_recent"),
        *replaced("research_by_type", "content_type_bid"),
        *replaced("research_by_author", "author_bid"),
    ]
