"""A consumer that keeps its cursor in the transaction of its own writes (tests/feed/consumer.py)
processes every change exactly once, though it is SIGKILLed at random points and started again
while two writers keep committing, the later ids first."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connection

from accounts.models import Team
from bipsync_partner.feed.models import FeedEntry
from devtools.processes import die_with_parent
from tests.feed.waiting import eventually
from tests.sync.conftest import database_url

pytestmark = pytest.mark.django_db(transaction=True)

CONSUMER = Path(__file__).with_name("consumer.py")
REPO_ROOT = Path(__file__).resolve().parents[2]
#: How long the writers write while the consumer is killed and restarted.
WRITING_SECONDS = 5.0
#: Kills while the writers write, at least.
KILLS = 5

_INSERT = (
    "INSERT INTO sync_researchdocument (team_id, tenant, bipsync_id, content_hash, "
    "first_synced_at, changed_at, title, content_type_bid, author_bid, author_name, "
    "lookup_fields) SELECT %s, 'acme', md5(random()::text || g)::varchar(24), '1', now(), "
    "now(), '', '', '', '', '{}' FROM generate_series(1, %s) AS g"
)


@pytest.fixture
def consumer_tables() -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE feed_consumer_processed (entry_id bigint NOT NULL)")
        cursor.execute("CREATE TABLE feed_consumer_state (position text)")
        cursor.execute("INSERT INTO feed_consumer_state VALUES (NULL)")
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE feed_consumer_processed, feed_consumer_state")


class Consumer:
    """tests/feed/consumer.py in a process of its own, started again after every kill."""

    def __init__(self, team: Team, log: Path) -> None:
        self.argv = [sys.executable, str(CONSUMER), str(team.pk), str(log)]
        self.env = {
            **os.environ,
            "CONSUMER_DATABASE": json.dumps(
                {
                    key: django_settings.DATABASES["default"][key]
                    for key in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")
                }
            ),
            "SECRET_KEY": django_settings.SECRET_KEY,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv, cwd=REPO_ROOT, env=self.env, preexec_fn=die_with_parent
        )

    def kill(self) -> None:
        assert self.process is not None
        assert self.process.poll() is None, "the consumer exited by itself"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.kills += 1


def processed() -> Counter[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT entry_id FROM feed_consumer_processed")
        return Counter(row[0] for row in cursor.fetchall())


def write_round(team: Team, first: psycopg.Connection, second: psycopg.Connection) -> None:
    """Two writers: the first takes the lower ids, the second commits first."""
    rng = random.Random()
    first.execute(_INSERT, [team.pk, rng.randint(1, 4)])
    second.execute(_INSERT, [team.pk, rng.randint(1, 4)])
    second.commit()
    time.sleep(rng.uniform(0, 0.01))
    first.commit()


def test_a_consumer_killed_at_random_points_processes_every_change_exactly_once(
    team: Team, consumer_tables: None, tmp_path: Path
) -> None:
    rng = random.Random()
    log = tmp_path / "consumer.log"
    log.touch()
    consumer = Consumer(team, log)
    consumer.start()
    try:
        with (
            psycopg.connect(database_url(), autocommit=False) as first,
            psycopg.connect(database_url(), autocommit=False) as second,
        ):
            ends = time.monotonic() + WRITING_SECONDS
            next_kill, logged_at_start = time.monotonic() + rng.uniform(0.3, 0.8), 0
            # On a loaded machine a start-up takes longer: write on until the kills are done.
            while time.monotonic() < ends or consumer.kills < KILLS:
                assert consumer.process is not None
                assert consumer.process.poll() is None, "the consumer exited by itself"
                # A long transaction anywhere on the server holds the feed back (see waiting.py).
                assert time.monotonic() < ends + 90, f"only {consumer.kills} kills in time"
                write_round(team, first, second)
                # At a random moment once this run of the consumer has begun processing (its
                # log grew), so the kills land in its work, not in its start-up.
                size = log.stat().st_size
                if time.monotonic() >= next_kill and size > logged_at_start:
                    consumer.kill()
                    consumer.start()
                    next_kill = time.monotonic() + rng.uniform(0.3, 0.8)
                    logged_at_start = size

        stored = set(FeedEntry.objects.filter(team=team).values_list("id", flat=True))
        eventually(processed, lambda found: set(found) >= stored, timeout=60)
        consumer.kill()
        done = processed()
    finally:
        if consumer.process is not None and consumer.process.poll() is None:
            consumer.process.kill()
            consumer.process.wait(timeout=10)

    assert set(done) == stored
    assert [entry for entry, times in done.items() if times > 1] == []
    # The kills did land in the middle of the work: the log shows changes processed in a
    # transaction that died with its process, and then again.
    logged = Counter(int(line) for line in log.read_text().split())
    assert any(times > 1 for times in logged.values()), "no kill cut a transaction short"
