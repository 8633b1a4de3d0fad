"""Drop ``research_browse`` (team, deleted_at, modified): ``research_recent`` (team, modified, id
on live rows, 0008) serves the browser's order and its live-rows filter, and no query used the
older index any more (0 scans over the research browser benchmark, bench/README.md), while every
document insert and update still paid for it.

Dropped with DROP INDEX CONCURRENTLY, so that the sync's writes are not held up (hence
``atomic = False``).
"""

from django.contrib.postgres.operations import RemoveIndexConcurrently
from django.db import migrations


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("sync", "0008_browser_title_trigram"),
    ]

    operations = [
        RemoveIndexConcurrently(model_name="researchdocument", name="research_browse"),
    ]
