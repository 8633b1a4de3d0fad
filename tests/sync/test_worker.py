"""Acceptance: a real Celery worker (prefork, 2 processes) on Redis and the test database, syncing
from and refreshing at the sandbox over real HTTP. One worker serves the whole module."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Membership, Team, User
from bipsync_partner.connections import sweep
from bipsync_partner.connections.models import Connection, ConnectionEvent
from bipsync_partner.connections.tasks import sweep_refreshes_task
from bipsync_partner.coordination import TenantGate
from bipsync_partner.sync import engine, scheduling
from bipsync_partner.sync.models import ResearchDocument, SyncRun, SyncSchedule
from tests.support.sandbox import Sandbox
from tests.sync.conftest import (
    SyncWorld,
    Worker,
    machine_connection,
    make_sync_world,
    user_connection,
    wait_for,
)
from tests.sync.helpers import assert_mirrors, bipsync_documents, row_versions

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def world(sandbox: Sandbox) -> Iterator[SyncWorld]:
    fresh = make_sync_world(sandbox)
    yield fresh
    sandbox.clear_faults()
    fresh.world.http.close()


def finished(run: SyncRun, timeout: float = 120) -> SyncRun:
    def done() -> bool:
        run.refresh_from_db()
        return run.is_finished

    wait_for(done, timeout=timeout, what=f"sync run {run.pk} to finish")
    return run


def test_the_worker_syncs_thousands_of_documents_then_exactly_what_changed(
    worker_settings: Settings,
    celery_worker: Worker,
    sandbox: Sandbox,
    world: SyncWorld,
    team: Team,
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 3000, seed=11)
    conn = machine_connection(team, world)

    first = finished(scheduling.request_sync(conn).run)

    assert first.status == SyncRun.Status.SUCCEEDED, first.error_message
    assert (first.seen_count, first.created_count, first.total_reported) == (3000, 3000, 3000)
    assert_mirrors(world, conn.pk)

    before = bipsync_documents(world)
    versions = row_versions(conn.pk)
    sandbox.mutate_research(world.tenant, world.team_id, 0.1, seed=12)
    after = bipsync_documents(world)
    edited = {bid for bid in before.keys() & after.keys() if before[bid] != after[bid]}
    created, deleted = after.keys() - before.keys(), before.keys() - after.keys()
    # The schedule, not a button, starts the second run: due now, picked up by the sweep.
    SyncSchedule.objects.filter(connection=conn).update(next_due_at=timezone.now())
    assert scheduling.sweep_due().runs_created == 1
    second = finished(SyncRun.objects.filter(connection=conn).latest("queued_at"))

    assert second.status == SyncRun.Status.SUCCEEDED, second.error_message
    assert second.trigger == SyncRun.Trigger.SCHEDULE
    assert (second.created_count, second.updated_count, second.deleted_count) == (
        len(created),
        len(edited),
        len(deleted),
    )
    assert second.unchanged_count == len(after) - len(created) - len(edited)
    assert_mirrors(world, conn.pk)
    changed_rows = {bid for bid, xmin in row_versions(conn.pk).items() if versions.get(bid) != xmin}
    assert changed_rows == edited | created | deleted | {f"{bid}/seen" for bid in created}


def test_a_run_killed_midway_resumes_and_ends_like_an_uninterrupted_one(
    worker_settings: Settings,
    celery_worker: Worker,
    sandbox: Sandbox,
    world: SyncWorld,
    team: Team,
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 3000, seed=13)
    reference = machine_connection(team, world)
    assert finished(scheduling.request_sync(reference).run).status == SyncRun.Status.SUCCEEDED
    # A second team syncing the same tenant, so that both end with comparable tables.
    other = Team.objects.create(name="Second desk", slug="second-desk")
    conn = machine_connection(other, world)
    sandbox.set_fault("slow", target="api", delay_ms=150, tenant=world.tenant)
    run = scheduling.request_sync(conn).run

    def some_pages_done() -> bool:
        run.refresh_from_db()
        return run.pages >= 4

    wait_for(some_pages_done, timeout=60, what="a few pages")
    celery_worker.kill()
    run.refresh_from_db()
    killed_at, scan_id = run.pages, run.scan_id
    assert run.status == SyncRun.Status.RUNNING
    assert 4 <= killed_at < 25
    sandbox.clear_faults()
    wait_for(lambda: engine.lock_is_free(conn.pk), timeout=10, what="Postgres to drop the lock")

    celery_worker.start()
    assert scheduling.sweep_due().resumed == 1
    run = finished(run)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    assert run.scan_id == scan_id
    assert run.seen_count == 3000
    assert run.created_count == 3000
    assert run.pages > killed_at
    assert_mirrors(world, conn.pk)

    def table(connection_id: uuid.UUID) -> dict[str, tuple[str, str]]:
        rows = ResearchDocument.objects.seen_by(connection_id).filter(deleted_at=None)
        return {
            bid: (title, digest)
            for bid, title, digest in rows.values_list("bipsync_id", "title", "content_hash")
        }

    assert table(conn.pk) == table(reference.pk)


def test_injected_rate_limits_and_server_errors_are_ridden_out(
    worker_settings: Settings,
    celery_worker: Worker,
    sandbox: Sandbox,
    world: SyncWorld,
    team: Team,
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 1000, seed=14)
    conn = machine_connection(team, world)
    sandbox.set_fault("rate_limit", target="api", delay_ms=1000, count=3, tenant=world.tenant)
    sandbox.set_fault("status", target="api", status=503, count=3, tenant=world.tenant)
    # Four 5xx in a row: within the client's five attempts, so they are ridden out inline.
    sandbox.set_fault("status", target="api", status=500, count=1, tenant=world.tenant)
    started = time.monotonic()

    run = finished(scheduling.request_sync(conn).run)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    assert run.rate_limited_count == 3
    assert time.monotonic() - started >= 3  # each 429 said "Retry-After: 1"
    assert_mirrors(world, conn.pk)


def test_two_racing_sweeps_cause_one_refresh_per_connection(
    worker_settings: Settings,
    celery_worker: Worker,
    sandbox: Sandbox,
    sync_world: SyncWorld,
    team: Team,
) -> None:
    users = [User.objects.create_user(f"analyst{i}@example.com", "pw") for i in range(8)]
    for user in users:
        team.add_member(user, Membership.Role.MEMBER)
    # Access tokens inside the refresh window (10 min): every connection is due.
    connections = [
        user_connection(sync_world, team, user, expires_in=timedelta(minutes=4)) for user in users
    ]
    versions = {c.pk: c.version for c in connections}
    client_id = sync_world.world.user_app.client_id
    refreshes_before = sandbox.token_requests(client_id, "refresh_token", outcome=None)

    sweep_refreshes_task.delay()
    sweep_refreshes_task.delay()

    def all_rotated() -> bool:
        return all(
            Connection.objects.get(pk=pk).version > version for pk, version in versions.items()
        )

    wait_for(all_rotated, timeout=60, what="every connection to be refreshed")
    time.sleep(2)  # a duplicate refresh, if any was queued, would land now
    refreshes = sandbox.token_requests(client_id, "refresh_token", outcome=None)
    assert refreshes - refreshes_before == len(connections)
    for conn in connections:
        conn.refresh_from_db()
        assert conn.version == versions[conn.pk] + 1
        assert conn.status == Connection.Status.ACTIVE
        assert conn.access_expires_at is not None
        assert conn.access_expires_at > timezone.now() + timedelta(minutes=30)
    assert sweep.sweep(lambda *_: None).due == 0


def test_a_refresh_refused_with_invalid_grant_stops_and_tells_the_admins(
    worker_settings: Settings,
    celery_worker: Worker,
    sandbox: Sandbox,
    sync_world: SyncWorld,
    team: Team,
    alice: User,
) -> None:
    conn = user_connection(sync_world, team, alice, expires_in=timedelta(minutes=2))
    # A refresh token Bipsync never issued: the refresh gets invalid_grant.
    conn.refresh_token = "rt-that-bipsync-never-issued"
    conn.save()

    sweep_refreshes_task.delay()

    def reconnect_needed() -> bool:
        conn.refresh_from_db()
        return conn.status == Connection.Status.NEEDS_RECONNECT

    wait_for(reconnect_needed, timeout=30, what="needs_reconnect")
    assert "invalid_grant" in conn.last_error_message
    assert conn.events.filter(kind=ConnectionEvent.Kind.NEEDS_RECONNECT).count() == 1
    # It is not due any more: no sweep queues it again, so no retry storm.
    assert not sweep.due_connections(timezone.now()).filter(pk=conn.pk).exists()


def test_a_rate_limit_seen_by_one_worker_is_honoured_by_every_worker(
    worker_settings: Settings,
    celery_worker: Worker,
    sandbox: Sandbox,
    world: SyncWorld,
    team: Team,
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 200, seed=15)
    conn = machine_connection(team, world)
    TenantGate(world.tenant).defer(3)  # as if another worker had just been told "wait 3 s"
    started = time.monotonic()

    run = finished(scheduling.request_sync(conn).run)

    assert run.status == SyncRun.Status.SUCCEEDED
    assert run.started_at is not None
    assert time.monotonic() - started >= 2.5
