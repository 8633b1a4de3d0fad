"""A consumer of a team's change feed, as a client of the feed would write one: it stores its
cursor in the same transaction as its own writes, so a crash anywhere loses or repeats nothing.

Run by tests/feed/test_consumer.py, and killed by it with SIGKILL at random points:

    python tests/feed/consumer.py TEAM_ID LOG_PATH

with the test database's Django settings as JSON in CONSUMER_DATABASE and the product's
SECRET_KEY (the cursors are signed with it). It configures only what ``read_changes`` needs, not
the product's settings: a client of the feed is not the product, and it starts in a fraction of
the time, which keeps the restarts quick.

It reads the feed page by page forever. For every change it writes a row to
``feed_consumer_processed`` (created by the test; no unique key, so a change processed twice
shows as two rows) and appends the entry's id to LOG_PATH *before* the transaction commits (so
the log shows work a kill threw away). The cursor lives in ``feed_consumer_state``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

#: Changes per page: small, so a run takes many pages and transactions.
PAGE = 25
#: The "work" per change, inside the transaction, so a kill often lands in one.
WORK_SECONDS = 0.002


def main(team_id: int, log_path: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY=os.environ["SECRET_KEY"],
        DATABASES={"default": json.loads(os.environ["CONSUMER_DATABASE"])},
        USE_TZ=True,
    )
    django.setup()
    from django.db import connection, transaction

    from bipsync_partner.feed.reading import read_changes

    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT position FROM feed_consumer_state FOR UPDATE")
            (position,) = cursor.fetchone()
            page = read_changes(team_id, position, PAGE)
            for change in page.entries:
                os.write(log, f"{change.id}\n".encode())
                cursor.execute(
                    "INSERT INTO feed_consumer_processed (entry_id) VALUES (%s)", [change.id]
                )
                time.sleep(WORK_SECONDS)
            cursor.execute("UPDATE feed_consumer_state SET position = %s", [page.next_cursor])
        if not page.has_more:
            time.sleep(0.01)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
