"""New research within a minute: between full scans, the short poll of the newest research
(GraphQL, sorted by creation) stores what the connection does not see yet."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.sync import fresh
from bipsync_partner.sync.engine import lock_key
from bipsync_partner.sync.models import ResearchDocument
from bipsync_partner.sync.tasks import poll_new_research_task
from tests.conftest import signed_in
from tests.support.sandbox import Sandbox
from tests.sync.conftest import SyncWorld, database_url
from tests.sync.fresh_support import create_note, fresh_connection, make_fresh_world
from tests.sync.test_engine import new_run, run_to_end

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(sandbox: Sandbox) -> Iterator[SyncWorld]:
    made = make_fresh_world(sandbox)
    yield made
    made.world.http.close()


def graphql_requests(sandbox: Sandbox, world: SyncWorld) -> int:
    return sandbox.api_requests(world.machine_app.client_id, "POST /v1/graphql", outcome=None)


def test_a_note_created_at_bipsync_is_in_the_research_browser_without_a_full_scan(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team, alice: User
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 60, seed=31)
    conn = fresh_connection(team, world)
    run_to_end(new_run(conn))
    note = create_note(world, "Fresh call notes on Initech")
    before = graphql_requests(sandbox, world)

    result = poll_new_research_task.apply(args=(str(conn.pk),)).get()

    assert result == "1 new in 1 requests"
    assert graphql_requests(sandbox, world) - before == 1
    stored = ResearchDocument.objects.get(bipsync_id=note)
    assert stored.title == "Fresh call notes on Initech"
    page = signed_in(alice).get(f"/teams/{team.slug}/research/", {"q": "Fresh call"})
    assert page.status_code == 200
    assert "Fresh call notes on Initech" in page.content.decode()


def test_the_next_full_scan_finds_what_the_poll_stored_unchanged(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 30, seed=32)
    conn = fresh_connection(team, world)
    run_to_end(new_run(conn))
    create_note(world, "Polled, then scanned")
    assert fresh.poll(conn.pk).created == 1

    run_to_end(run := new_run(conn))

    assert (run.created_count, run.updated_count, run.unchanged_count) == (0, 0, 31)


def test_a_second_poll_finds_nothing_new_in_one_request(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 30, seed=33)
    conn = fresh_connection(team, world)
    run_to_end(new_run(conn))
    for n in range(3):
        create_note(world, f"Burst note {n}")
    assert fresh.poll(conn.pk).created == 3

    again = fresh.poll(conn.pk)

    assert (again.created, again.requests) == (0, 1)
    assert ResearchDocument.objects.filter(title__startswith="Burst note").count() == 3


def test_the_poll_is_skipped_while_the_connection_s_full_scan_runs(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 20, seed=34)
    conn = fresh_connection(team, world)
    run_to_end(new_run(conn))
    create_note(world, "Waits for the scan")
    before = graphql_requests(sandbox, world)
    # The scan's lock, held by another database session as a running sync's worker holds it.
    with psycopg.connect(database_url(), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [lock_key(conn.pk)])
        polled = fresh.poll(conn.pk)

    assert polled.skipped == "a full scan is running"
    assert graphql_requests(sandbox, world) == before
    assert not ResearchDocument.objects.filter(title="Waits for the scan").exists()


def test_a_connection_never_scanned_is_left_to_its_first_full_scan(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    conn = fresh_connection(team, world)
    create_note(world, "Not polled")

    assert fresh.poll(conn.pk).skipped == "no full scan has stored anything yet"
    assert fresh.sweep() == 0
