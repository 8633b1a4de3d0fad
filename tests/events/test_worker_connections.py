"""A worker process keeps its database connection from one task to the next (Celery's Django
fixup would close it around every task), and still replaces one PostgreSQL dropped in between.

Through a real worker of one process, so that every task runs in the same process and on the
same connection, and real deliveries to the real receiver."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection, transaction
from pytest_django.fixtures import Settings

from accounts.models import Team
from bipsync_partner.events import outbox
from bipsync_partner.events.models import Delivery
from tests.events.conftest import Receiver, add_endpoint, running_events_worker
from tests.sync.conftest import Worker

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def one_process_worker(events_settings: Settings, tmp_path: Path) -> Iterator[Worker]:
    with running_events_worker(tmp_path, concurrency=1) as worker:
        yield worker


def the_workers_sessions() -> set[int]:
    """The database's other client sessions: the worker's (this test process has only its own)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return {row[0] for row in cursor.fetchall()}


def deliver_one(team: Team, worker: Worker, n: int) -> None:
    with transaction.atomic():
        outbox.record(team.pk, "write.delivered", {"write": {"id": f"w-{n}"}})
    deadline = time.monotonic() + 20
    while Delivery.objects.filter(status=Delivery.Status.PENDING).exists():
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.05)
    # The run ends just after its last mark: give the task's end (where Celery's fixup would
    # close the connection) time to pass before looking at the sessions.
    time.sleep(0.5)


def test_a_worker_process_runs_its_tasks_on_one_database_session(
    one_process_worker: Worker, receiver: Receiver, team: Team
) -> None:
    add_endpoint(team, receiver)
    seen: list[set[int]] = []
    for n in range(5):
        deliver_one(team, one_process_worker, n)
        seen.append(the_workers_sessions())

    assert all(len(sessions) == 1 for sessions in seen), seen
    assert len(set.union(*seen)) == 1, seen
    assert len(receiver.accepted) == 5


def test_a_session_postgresql_dropped_between_tasks_is_replaced_before_the_next_task(
    one_process_worker: Worker, receiver: Receiver, team: Team
) -> None:
    add_endpoint(team, receiver)
    deliver_one(team, one_process_worker, 0)
    (before,) = the_workers_sessions()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [before])

    # No sweep: the run queued by this event must itself deliver it, on a new session.
    deliver_one(team, one_process_worker, 1)

    (after,) = the_workers_sessions()
    assert after != before
    assert len(receiver.accepted) == 2
    assert "OperationalError" not in one_process_worker.log_tail(20000)
