"""A sighting never outlives the document or the connection it names, though the database does
not check either key (see ``DocumentSighting``): the races those checks caught, played out
with two real PostgreSQL sessions, one holding its transaction open while the other runs.

The team has two machine connections to one tenant: ``first`` stored three documents, and
``second`` sights some of them for the first time while ``first`` is disconnected (its
removal: ``forget_connection``) or deleted, or while the team is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import close_old_connections, transaction
from django.db import connection as db

from accounts.models import Team
from bipsync_partner.connections.models import Connection
from bipsync_partner.feed.models import FeedEntry
from bipsync_partner.sqlnames import column, table
from bipsync_partner.sync import engine, scheduling
from bipsync_partner.sync.engine.documents import store_documents
from bipsync_partner.sync.engine.results import ConnectionGone, PageResult
from bipsync_partner.sync.exposure import forget_connection
from bipsync_partner.sync.models import DocumentSighting, ResearchDocument, SyncRun

pytestmark = pytest.mark.django_db(transaction=True)

IDS = [f"{n:024x}" for n in (0xA1, 0xA2, 0xA3)]


def machine(team: Team, name: str) -> Connection:
    return Connection.objects.create(
        team=team,
        tenant="acme",
        kind=Connection.Kind.CLIENT_CREDENTIALS,
        client_id=f"export-{name}",
        client_secret="not-a-real-secret",
        bipsync_team_id="5f0c9a1b2c3d4e5f60718293",
        scopes="rest_api:read",
    )


def item(bid: str) -> dict[str, Any]:
    return {"id": bid, "title": f"Note {bid[-2:]}", "modified": "2026-11-30T09:00:00Z"}


def new_run(conn: Connection) -> SyncRun:
    return scheduling.request_sync(conn, publish=lambda *_: None).run


def store(run: SyncRun, ids: list[str]) -> PageResult:
    """One page of ``ids`` through the engine's page statement."""
    step = engine.Step(
        offset=0,
        items=[item(bid) for bid in ids],
        total=len(ids),
        next_offset=len(ids),
        anchor=ids[-1],
        unstable=False,
    )
    return engine.store_page(run, step)


@dataclass
class Held:
    """``work`` run in a thread of its own (its own database session) inside a transaction
    that stays open until :meth:`commit`."""

    work: Callable[[], object]
    done: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.done.wait(30), "the held work did not finish"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            with transaction.atomic():
                self.result = self.work()
                self.done.set()
                assert self.go.wait(60)
        except BaseException as exc:
            self.error = exc
            self.done.set()
        finally:
            db.close()

    def commit(self) -> None:
        self.go.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        assert self.error is None, self.error


@dataclass
class Waiting:
    """``work`` run in a thread of its own (autocommit), expected to wait on a lock."""

    work: Callable[[], object]
    result: object = None
    error: BaseException | None = None
    #: Its database session's backend.
    pid: int = 0

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            db.ensure_connection()
            self.pid = db.connection.info.backend_pid
            self.result = self.work()
        except BaseException as exc:
            self.error = exc
        finally:
            db.close()

    def wait_for_the_lock(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.thread.is_alive(), f"it did not wait on a lock ({self.error!r})"
            with db.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE pid = %s AND wait_event_type = 'Lock'",
                    [self.pid],
                )
                (waiting,) = cursor.fetchone()
            if waiting:
                return
            time.sleep(0.02)
        raise AssertionError("it never waited on a lock")

    def join(self) -> object:
        self.thread.join(30)
        assert not self.thread.is_alive()
        return self.result


def interleaved(held: Callable[[], object], waiting: Callable[[], object]) -> tuple[Held, Waiting]:
    """``held`` runs and keeps its transaction open; ``waiting`` then runs and waits on a lock
    that ``held`` took; ``held`` commits, and ``waiting`` ends."""
    first = Held(held)
    second = Waiting(waiting)
    second.wait_for_the_lock()
    first.commit()
    second.join()
    return first, second


def orphaned_sightings() -> int:
    """Sightings whose document or connection is gone."""
    s, d, c = table(DocumentSighting), table(ResearchDocument), table(Connection)
    document, conn = (column(DocumentSighting, name) for name in ("document", "connection"))
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {s} AS s "
            f"WHERE NOT EXISTS (SELECT FROM {d} AS d WHERE d.id = s.{document}) "
            f"OR NOT EXISTS (SELECT FROM {c} AS c WHERE c.id = s.{conn})"
        )
        (count,) = cursor.fetchone()
    return int(count)


def sighted_by(conn: Connection) -> set[str]:
    return set(ResearchDocument.objects.seen_by(conn).values_list("bipsync_id", flat=True))


@pytest.fixture
def first(team: Team) -> Iterator[Connection]:
    conn = machine(team, "first")
    assert store(new_run(conn), IDS).created == 3
    yield conn
    close_old_connections()


@pytest.fixture
def second(team: Team) -> Connection:
    return machine(team, "second")


def disconnect(conn: Connection) -> None:
    Connection.objects.filter(pk=conn.pk).update(status=Connection.Status.DISCONNECTED)


def test_a_disconnect_waits_for_a_page_sighting_its_documents_and_keeps_them(
    first: Connection, second: Connection
) -> None:
    disconnect(first)
    run = new_run(second)

    _, forgetting = interleaved(lambda: store(run, IDS[:1]), lambda: forget_connection(first.pk))

    assert forgetting.error is None, forgetting.error
    assert forgetting.result == 2  # the two documents no other connection sees
    assert sighted_by(second) == {IDS[0]}
    assert set(ResearchDocument.objects.values_list("bipsync_id", flat=True)) == {IDS[0]}
    assert not DocumentSighting.objects.filter(connection=first).exists()
    assert orphaned_sightings() == 0


def test_a_page_waiting_on_a_disconnect_stores_again_what_the_disconnect_removed(
    first: Connection, second: Connection
) -> None:
    disconnect(first)
    before = ResearchDocument.objects.get(bipsync_id=IDS[0]).pk
    run = new_run(second)

    forgetting, page = interleaved(lambda: forget_connection(first.pk), lambda: store(run, IDS[:1]))

    assert forgetting.result == 3
    assert page.error is None, page.error
    assert isinstance(page.result, PageResult)
    assert page.result.created == 1
    again = ResearchDocument.objects.get(bipsync_id=IDS[0])
    assert again.pk != before  # the removed row, stored again as the second connection sees it
    assert sighted_by(second) == {IDS[0]}
    assert orphaned_sightings() == 0
    run.refresh_from_db()
    assert (run.created_count, run.unchanged_count) == (1, 0)


def test_documents_a_hint_names_while_a_disconnect_removes_them_are_stored_again(
    first: Connection, second: Connection
) -> None:
    disconnect(first)

    _, hinted = interleaved(
        lambda: forget_connection(first.pk), lambda: store_documents(second, [item(IDS[1])])
    )

    assert hinted.error is None, hinted.error
    assert isinstance(hinted.result, PageResult)
    assert hinted.result.created == 1
    assert sighted_by(second) == {IDS[1]}
    assert orphaned_sightings() == 0


def test_a_connection_deleted_while_its_page_is_written_keeps_no_sighting(
    team: Team, second: Connection
) -> None:
    run = new_run(second)

    _, deleting = interleaved(
        lambda: store(run, IDS), lambda: Connection.objects.get(pk=second.pk).delete()
    )

    assert deleting.error is None, deleting.error
    assert not Connection.objects.filter(pk=second.pk).exists()
    assert not DocumentSighting.objects.exists()
    assert orphaned_sightings() == 0


def test_a_page_of_a_connection_deleted_meanwhile_writes_nothing(
    team: Team, second: Connection
) -> None:
    run = new_run(second)

    _, page = interleaved(
        lambda: Connection.objects.get(pk=second.pk).delete(), lambda: store(run, IDS)
    )

    assert isinstance(page.error, ConnectionGone)
    assert not ResearchDocument.objects.exists()
    assert not DocumentSighting.objects.exists()


def test_a_team_deleted_while_a_page_is_written_keeps_none_of_its_research(
    team: Team, second: Connection
) -> None:
    run = new_run(second)

    _, deleting = interleaved(
        lambda: store(run, IDS), lambda: Team.objects.get(pk=team.pk).delete()
    )

    assert deleting.error is None, deleting.error
    assert not ResearchDocument.objects.filter(team_id=team.pk).exists()
    assert not DocumentSighting.objects.exists()
    assert not FeedEntry.objects.filter(team_id=team.pk).exists()
