"""The sync engine in this process against the sandbox over real HTTP (the worker tests run the
same engine through Celery)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
import redis
from django.db.models.signals import post_save
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.celery import app as celery_app
from bipsync_partner.connections.models import Connection
from bipsync_partner.sync import engine, scheduling
from bipsync_partner.sync.client import api_for
from bipsync_partner.sync.models import (
    DocumentSighting,
    ResearchDocument,
    ScanPage,
    SyncedContentType,
    SyncedField,
    SyncRun,
    SyncSchedule,
    TeamSyncSettings,
)
from tests.support.sandbox import Sandbox
from tests.sync.conftest import (
    SyncWorld,
    database_url,
    machine_connection,
    make_sync_world,
    user_connection,
)
from tests.sync.helpers import assert_mirrors, bipsync_documents, row_versions

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(sandbox: Sandbox) -> Iterator[SyncWorld]:
    fresh = make_sync_world(sandbox)
    yield fresh
    fresh.world.http.close()


def new_run(conn: Connection) -> SyncRun:
    sent: list[tuple[int, float]] = []
    requested = scheduling.request_sync(
        conn, publish=lambda run_id, delay: sent.append((run_id, delay))
    )
    assert sent == [(requested.run.pk, 0.0)]
    return requested.run


def run_to_end(run: SyncRun, *, deadline: float | None = None) -> engine.Outcome:
    outcome = engine.execute(run.pk, api_factory=api_for, deadline=deadline)
    run.refresh_from_db()
    return outcome


def test_a_first_sync_brings_every_document_content_type_and_field(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 450, seed=1)
    conn = machine_connection(team, world)

    outcome = run_to_end(run := new_run(conn))

    assert outcome.action == engine.DONE
    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    assert (run.seen_count, run.created_count, run.updated_count) == (450, 450, 0)
    assert (run.unchanged_count, run.deleted_count) == (0, 0)
    assert run.pages == 5
    assert run.total_reported == 450
    assert run.finished_at is not None
    assert run.started_at is not None
    assert_mirrors(world, conn.pk)
    assert SyncedContentType.objects.filter(connection=conn).count() == run.content_types_count > 0
    assert SyncedField.objects.filter(connection=conn).count() == run.fields_count > 0
    assert not ScanPage.objects.exists()
    schedule = SyncSchedule.objects.get(connection=conn)
    assert schedule.last_success_at == run.finished_at
    assert schedule.next_due_at > run.finished_at


def test_a_run_is_never_seen_finished_before_its_rate_limits_are_counted(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 50, seed=15)
    conn = machine_connection(team, world)
    sandbox.set_fault("rate_limit", target="api", delay_ms=1000, count=2, tenant=world.tenant)
    # What a reader (a page, a test's poll) finds in the database the moment the run is saved
    # as finished.
    counted_when_finished: list[int] = []

    def on_save(sender: type[SyncRun], instance: SyncRun, **kwargs: object) -> None:
        if instance.status == SyncRun.Status.SUCCEEDED:
            stored = SyncRun.objects.get(pk=instance.pk)
            counted_when_finished.append(stored.rate_limited_count)

    post_save.connect(on_save, sender=SyncRun, dispatch_uid="test.counted_when_finished")
    try:
        run_to_end(run := new_run(conn))
    finally:
        post_save.disconnect(sender=SyncRun, dispatch_uid="test.counted_when_finished")

    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    assert run.rate_limited_count == 2
    assert counted_when_finished == [2]


def test_an_unchanged_resync_writes_no_document_row(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 300, seed=2)
    conn = machine_connection(team, world)
    run_to_end(new_run(conn))
    before = row_versions(conn.pk)

    run_to_end(second := new_run(conn))

    assert second.status == SyncRun.Status.SUCCEEDED
    assert (second.seen_count, second.unchanged_count) == (300, 300)
    assert (second.created_count, second.updated_count, second.deleted_count) == (0, 0, 0)
    assert row_versions(conn.pk) == before


def test_a_resync_after_mutation_reflects_every_edit_creation_and_deletion(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 500, seed=3)
    conn = machine_connection(team, world)
    run_to_end(new_run(conn))
    before_versions = row_versions(conn.pk)
    before = bipsync_documents(world)
    changes = sandbox.mutate_research(world.tenant, world.team_id, 0.1, seed=4)
    after = bipsync_documents(world)
    edited = {bid for bid in before.keys() & after.keys() if before[bid] != after[bid]}
    deleted = before.keys() - after.keys()
    created = after.keys() - before.keys()
    assert (len(edited), len(deleted), len(created)) == (
        changes["edited"],
        changes["deleted"],
        changes["created"],
    )

    run_to_end(run := new_run(conn))

    assert run.status == SyncRun.Status.SUCCEEDED
    assert (run.created_count, run.updated_count, run.deleted_count) == (
        len(created),
        len(edited),
        len(deleted),
    )
    assert run.unchanged_count == len(after) - len(created) - len(edited)
    assert_mirrors(world, conn.pk)
    gone = ResearchDocument.objects.filter(team_id=team.pk, bipsync_id__in=deleted)
    assert all(doc.deleted_at is not None for doc in gone)
    assert not gone.filter(sightings__isnull=False).exists()
    assert gone.count() == len(deleted)
    # Only the edited, created and deleted rows were written, and the new documents' sightings.
    now_versions = row_versions(conn.pk)
    written = {bid for bid, xmin in now_versions.items() if before_versions.get(bid) != xmin}
    assert written == edited | created | deleted | {f"{bid}/seen" for bid in created}


def test_a_run_stopped_between_pages_resumes_at_its_checkpoint_with_the_same_scan(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 420, seed=5)
    conn = machine_connection(team, world)
    run = new_run(conn)
    scan_id = run.scan_id

    first = run_to_end(run, deadline=time.monotonic())  # stops after its first page

    assert first.action == engine.CONTINUE
    assert run.status == SyncRun.Status.QUEUED
    assert (run.next_offset, run.pages, run.scan_id) == (100, 1, scan_id)
    assert ResearchDocument.objects.seen_by(conn).count() == 100
    # The connection had nothing stored: a first scan, which records no ids (nothing to delete).
    assert run.first_scan
    assert not ScanPage.objects.filter(run=run).exists()

    run_to_end(run)

    assert run.status == SyncRun.Status.SUCCEEDED
    assert (run.scan_id, run.pages, run.seen_count, run.created_count) == (scan_id, 5, 420, 420)
    # Still a first scan after resuming with 100 rows stored: recomputed, it would have marked
    # the first page's documents deleted, as the resumed slices never saw them.
    assert run.first_scan
    assert run.deleted_count == 0
    assert_mirrors(world, conn.pk)


def test_a_list_changing_during_the_scan_never_causes_a_false_deletion(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 600, seed=6)
    conn = machine_connection(team, world)
    run_to_end(new_run(conn))
    run = new_run(conn)
    run_to_end(run, deadline=time.monotonic())
    assert not run.first_scan
    assert ScanPage.objects.filter(run=run).count() == 1
    # Deleting while the scan is half done moves later documents to offsets already read;
    # without realignment the scan would skip them and then call them deleted.
    sandbox.mutate_research(world.tenant, world.team_id, 0.3, seed=7)

    run_to_end(run)

    assert run.status == SyncRun.Status.SUCCEEDED
    present = bipsync_documents(world)
    marked = set(
        ResearchDocument.objects.filter(team_id=team.pk, deleted_at__isnull=False).values_list(
            "bipsync_id", flat=True
        )
    )
    assert not marked & present.keys()
    live = set(
        ResearchDocument.objects.seen_by(conn)
        .filter(deleted_at__isnull=True)
        .values_list("bipsync_id", flat=True)
    )
    assert present.keys() <= live  # nothing skipped: every document is there
    run_to_end(following := new_run(conn))
    assert following.status == SyncRun.Status.SUCCEEDED
    assert_mirrors(world, conn.pk)


def test_one_connection_has_one_unfinished_run_and_one_worker_on_it(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    conn = machine_connection(team, world)
    first = scheduling.request_sync(conn, publish=lambda *_: None)
    again = scheduling.request_sync(conn, publish=lambda *_: None)
    assert first.created
    assert not again.created
    assert again.run == first.run

    # Another worker's database session holds the connection's lock.
    with psycopg.connect(database_url(), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [engine.lock_key(conn.pk)])
        assert not engine.lock_is_free(conn.pk)
        outcome = engine.execute(first.run.pk, api_factory=api_for)
        # (Closing the session would release it too, but only once its backend has exited.)
        other.execute("SELECT pg_advisory_unlock(%s)", [engine.lock_key(conn.pk)])
    assert engine.lock_is_free(conn.pk)

    assert outcome.action == engine.DONE
    assert "another worker" in outcome.reason
    first.run.refresh_from_db()
    assert first.run.status == SyncRun.Status.QUEUED
    assert first.run.pages == 0


def test_a_users_own_connection_syncs_only_when_the_team_enables_it(
    partner: Settings, sandbox: Sandbox, sync_world: SyncWorld, team: Team, alice: User
) -> None:
    conn = user_connection(sync_world, team, alice)
    run_to_end(refused := new_run(conn))
    assert refused.status == SyncRun.Status.FAILED
    assert refused.error_code == "not_syncable"

    TeamSyncSettings.objects.create(team=team, sync_user_connections=True)
    run_to_end(allowed := new_run(conn))
    assert allowed.status == SyncRun.Status.SUCCEEDED, allowed.error_message


def test_a_tenant_that_does_not_allow_our_address_fails_the_run_with_that_sentence(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    conn = machine_connection(team, world)
    sandbox.set_allowlist(world.tenant, ["203.0.113.0/24"])

    run_to_end(run := new_run(conn))

    assert run.status == SyncRun.Status.FAILED
    assert run.error_code == "ip_not_allow_listed"
    assert "this server's IP address is not allow-listed by the Bipsync tenant" in run.error_message
    assert "permission" not in run.error_message.lower()


def test_deleting_a_team_deletes_its_connections_synced_research(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 120, seed=8)
    conn = machine_connection(team, world)
    run_to_end(run := new_run(conn))
    assert run.status == SyncRun.Status.SUCCEEDED
    team_id = team.pk
    assert ResearchDocument.objects.filter(team_id=team_id).count() == 120

    team.delete()

    # The team column has no database constraint of its own (the connection's keys cover it):
    # Django's cascade must still remove every row, and the sightings with the connection.
    assert not ResearchDocument.objects.filter(team_id=team_id).exists()
    assert not DocumentSighting.objects.filter(connection_id=conn.pk).exists()


def test_a_first_scan_that_meets_documents_again_updates_them_instead_of_failing(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 150, seed=9)
    conn = machine_connection(team, world)
    run = new_run(conn)
    run_to_end(run, deadline=time.monotonic())  # its first page: 100 documents stored
    assert run.first_scan
    first_page = list(bipsync_documents(world).values())[:100]
    stored = set(ResearchDocument.objects.seen_by(conn).values_list("bipsync_id", flat=True))
    assert {item["id"] for item in first_page} == stored
    # The list moved under the scan and took its anchor away: the next page read holds
    # documents the scan already stored (scan() then hands over the whole page), one edited.
    edited = {**first_page[0], "title": "Edited while the scan ran"}
    again = engine.Step(
        offset=100,
        items=[edited, *first_page[1:50]],
        total=150,
        next_offset=150,
        anchor=first_page[49]["id"],
        unstable=True,
    )

    result = engine.store_page(run, again)

    # The edited one is written; the 49 met again as they were stored are not rewritten.
    assert (result.seen, result.created, result.updated) == (50, 0, 1)
    assert ResearchDocument.objects.seen_by(conn).count() == 100
    changed = ResearchDocument.objects.get(team_id=team.pk, bipsync_id=edited["id"])
    assert changed.title == "Edited while the scan ran"
    run.refresh_from_db()
    assert (run.pages, run.seen_count, run.created_count, run.updated_count) == (2, 150, 100, 1)


def _analysed_columns() -> set[str]:
    with psycopg.connect(database_url(), autocommit=True) as pg:
        return {
            name
            for (name,) in pg.execute(
                "SELECT attname FROM pg_stats WHERE tablename = 'sync_researchdocument'"
            )
        }


def _analyses() -> int:
    with psycopg.connect(database_url(), autocommit=True) as pg:
        pg.execute("SELECT pg_stat_clear_snapshot()")
        row = pg.execute(
            "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'sync_researchdocument'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _default_queue() -> tuple[redis.Redis, str]:
    prefix = celery_app.conf.broker_transport_options.get("global_keyprefix", "")
    return redis.Redis.from_url(celery_app.conf.broker_url), f"{prefix}default"


def _refreshes_queued() -> int:
    client, key = _default_queue()
    return sum(b'"sync.refresh_statistics"' in message for message in client.lrange(key, 0, -1))


def _drop_queued_refreshes() -> None:
    client, key = _default_queue()
    for message in client.lrange(key, 0, -1):
        if b'"sync.refresh_statistics"' in message:
            client.lrem(key, 0, message)  # type: ignore[arg-type]  # bytes are values too


def test_a_run_that_changed_many_rows_queues_a_refresh_of_the_statistics_instead_of_waiting(
    partner: Settings,
    sandbox: Sandbox,
    world: SyncWorld,
    team: Team,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The threshold is lowered rather than 5,000 documents synced, to keep the test short (to
    # the run's every row: its last page's too). The task goes to the real broker; no worker
    # takes it here: what it runs is called below.
    monkeypatch.setattr(engine.statistics, "ANALYZE_AFTER_CHANGES", 150)
    waiting = _refreshes_queued()
    sandbox.generate_research(world.tenant, world.team_id, 150, seed=41)
    conn = machine_connection(team, world)
    # Earlier tests in this database wrote rows too: start from fresh statistics.
    time.sleep(1.1)  # PostgreSQL publishes a backend's row counts at most once a second
    engine.statistics.refresh_if_stale()
    analyses = _analyses()

    run_to_end(run := new_run(conn))

    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    assert _refreshes_queued() == waiting + 1
    assert _analyses() == analyses  # the run did not wait for it

    # At once, as the queued task would: the run's row counts were published as it ended
    # (PostgreSQL publishes a session's at most once a second, up to 10 s late otherwise).
    assert set(engine.statistics.refresh_if_stale()) == {
        "sync_researchdocument",
        "sync_documentsighting",
    }
    assert {"tenant", "team_id", "bipsync_id", "title"} <= _analysed_columns()
    assert "lookup_fields" not in _analysed_columns()  # left to autovacuum: half the cost
    assert engine.statistics.refresh_if_stale() == []  # safe to run twice
    assert _analyses() == analyses + 1


def test_a_run_refreshes_stale_statistics_itself_before_its_first_page(
    partner: Settings,
    sandbox: Sandbox,
    world: SyncWorld,
    team: Team,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine.statistics, "ANALYZE_AFTER_CHANGES", 100)
    sandbox.generate_research(world.tenant, world.team_id, 150, seed=42)
    conn = machine_connection(team, world)
    run_to_end(new_run(conn))
    _drop_queued_refreshes()  # the task is lost (a broker emptied before a worker took it)
    time.sleep(1.1)
    analyses = _analyses()

    run_to_end(again := new_run(conn))
    run_to_end(third := new_run(conn))

    assert (again.status, third.status) == (SyncRun.Status.SUCCEEDED, SyncRun.Status.SUCCEEDED)
    assert _analyses() == analyses + 1  # the second run refreshed them; the third had no need
