"""A sync marks documents deleted only after a scan that is demonstrably complete.

Bipsync's listing is faulted in the sandbox over real HTTP (admin API faults ``empty_page``,
``short_page`` and ``end_early`` on the research path only), and the engine runs in this process
as in a worker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from pytest_django.fixtures import Settings

from accounts.models import Team
from bipsync_partner.connections.models import Connection
from bipsync_partner.sync import engine, scheduling
from bipsync_partner.sync.client import api_for
from bipsync_partner.sync.models import ResearchDocument, ScanPage, SyncedContentType, SyncRun
from tests.support.sandbox import Sandbox
from tests.sync.conftest import SyncWorld, machine_connection, make_sync_world
from tests.sync.helpers import assert_mirrors, bipsync_documents

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(sandbox: Sandbox) -> Iterator[SyncWorld]:
    fresh = make_sync_world(sandbox)
    try:
        yield fresh
    finally:
        sandbox.clear_faults(target="api")
        fresh.world.http.close()


def new_run(conn: Connection) -> SyncRun:
    return scheduling.request_sync(conn, publish=lambda *_: None).run


def work(run: SyncRun, *, deadline: float | None = None) -> engine.Outcome:
    outcome = engine.execute(run.pk, api_factory=api_for, deadline=deadline)
    run.refresh_from_db()
    return outcome


def synced(sandbox: Sandbox, world: SyncWorld, team: Team, count: int, seed: int) -> Connection:
    """A connection whose first sync stored ``count`` documents."""
    sandbox.generate_research(world.tenant, world.team_id, count, seed=seed)
    conn = machine_connection(team, world)
    work(first := new_run(conn))
    assert first.status == SyncRun.Status.SUCCEEDED, first.error_message
    assert live(conn) == count
    return conn


def live(conn: Connection) -> int:
    return ResearchDocument.objects.seen_by(conn).filter(deleted_at__isnull=True).count()


def research_fault(
    sandbox: Sandbox, world: SyncWorld, kind: str, *, count: int | None, keep: int | None = None
) -> None:
    """A fault on the research listing only: content types and fields still answer."""
    path = urlsplit(world.world.api_base).path + "/v1/research"
    sandbox.set_fault(kind, target="api", path_prefix=path, count=count, keep=keep)


def test_an_empty_listing_where_documents_are_stored_fails_the_run_and_deletes_nothing(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    conn = synced(sandbox, world, team, 150, seed=21)
    research_fault(sandbox, world, "empty_page", count=1)

    work(run := new_run(conn))

    assert run.status == SyncRun.Status.FAILED
    assert run.error_code == "empty_listing"
    assert run.error_message.startswith(
        "Bipsync listed no research documents for this connection, where 150 are stored"
    )
    assert run.deleted_count == 0
    assert live(conn) == 150
    assert not ScanPage.objects.filter(run=run).exists()
    # The listing is back: nothing was lost, nothing to restore.
    work(after := new_run(conn))
    assert after.status == SyncRun.Status.SUCCEEDED
    assert (after.deleted_count, after.created_count, after.updated_count) == (0, 0, 0)
    assert_mirrors(world, conn.pk)


def test_an_empty_listing_found_by_two_runs_in_a_row_marks_the_documents_deleted(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    conn = synced(sandbox, world, team, 120, seed=22)
    research_fault(sandbox, world, "empty_page", count=None)
    work(first := new_run(conn))
    assert first.error_code == "empty_listing"

    work(second := new_run(conn))

    assert second.status == SyncRun.Status.SUCCEEDED, second.error_message
    assert second.deleted_count == 120
    assert "no documents for the second run in a row" in second.notes
    assert live(conn) == 0


def test_a_page_short_of_its_total_marks_nothing_deleted_and_the_run_reads_on(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    conn = synced(sandbox, world, team, 150, seed=23)
    run = new_run(conn)
    assert work(run, deadline=time.monotonic()).action == engine.CONTINUE  # its first page
    # The second page answers 8 of its 50 documents, under the total of 150.
    research_fault(sandbox, world, "short_page", count=1, keep=8)

    outcome = work(run)

    assert outcome.action == engine.RETRY
    assert outcome.reason == "incomplete_listing"
    assert run.status == SyncRun.Status.QUEUED
    assert "ended after 107 of the 150 documents it reported" in run.error_message
    assert live(conn) == 150

    work(run)  # Bipsync answers whole pages again: the run reads on from its checkpoint

    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    assert (run.deleted_count, run.seen_count, run.total_reported) == (0, 150, 150)
    assert live(conn) == 150
    assert_mirrors(world, conn.pk)


def test_a_listing_that_keeps_stopping_short_fails_the_run_without_deleting(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    conn = synced(sandbox, world, team, 150, seed=24)
    partner.SYNC_MAX_ATTEMPTS = 2
    research_fault(sandbox, world, "short_page", count=None, keep=8)
    run = new_run(conn)

    assert work(run).action == engine.RETRY
    assert work(run).action == engine.DONE

    assert run.status == SyncRun.Status.FAILED
    assert run.error_code == "incomplete_listing"
    assert "gave up after 2 attempts" in run.error_message
    assert run.deleted_count == 0
    assert live(conn) == 150


def test_a_mass_deletion_is_marked_only_when_a_second_scan_agrees(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    conn = synced(sandbox, world, team, 300, seed=25)
    before = bipsync_documents(world)
    sandbox.mutate_research(world.tenant, world.team_id, 0.3, seed=26)
    after = bipsync_documents(world)
    deleted = before.keys() - after.keys()
    assert 0 < len(deleted) * 100 < 20 * 300
    partner.SYNC_CONFIRM_DELETIONS_PERCENT = 1  # so that this deletion counts as a mass one
    client_id = world.machine_app.client_id
    pages_before = sandbox.api_requests(client_id)

    work(run := new_run(conn))

    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    assert run.confirming_deletions
    assert f"A scan found {len(deleted)} of the" in run.notes
    assert run.deleted_count == len(deleted)
    # Both scans read the whole list: at least ceil(n / 100) pages each.
    assert sandbox.api_requests(client_id) - pages_before == run.pages
    assert run.pages >= 2 * -(-len(after) // 100)
    assert_mirrors(world, conn.pk)


def test_a_listing_that_ends_early_loses_nothing_when_the_second_scan_disagrees(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    conn = synced(sandbox, world, team, 150, seed=27)
    run = new_run(conn)
    work(run, deadline=time.monotonic())  # its first page
    # The second page says the list ends with the anchor: a consistent, complete-looking
    # listing of 100 documents, 50 fewer than stored (a third: more than the default 20%).
    research_fault(sandbox, world, "end_early", count=1, keep=1)

    work(run)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    assert run.confirming_deletions
    assert "A scan found 50 of the 150 stored documents gone (more than 20%)" in run.notes
    assert run.deleted_count == 0
    assert live(conn) == 150
    assert_mirrors(world, conn.pk)


def test_a_small_deletion_needs_no_second_scan(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    conn = synced(sandbox, world, team, 200, seed=28)
    sandbox.mutate_research(world.tenant, world.team_id, 0.1, seed=29)
    client_id = world.machine_app.client_id
    pages_before = sandbox.api_requests(client_id)

    work(run := new_run(conn))

    assert run.status == SyncRun.Status.SUCCEEDED
    assert not run.confirming_deletions
    assert run.deleted_count > 0
    # One scan: fewer pages than two listings of ceil(n / 100) each.
    assert sandbox.api_requests(client_id) - pages_before == run.pages
    assert run.pages < 2 * -(-(run.total_reported or 0) // 100)
    assert_mirrors(world, conn.pk)


def test_a_scan_whose_distinct_documents_fall_short_of_the_total_marks_nothing_deleted(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    conn = synced(sandbox, world, team, 150, seed=30)
    run = new_run(conn)
    work(run, deadline=time.monotonic())  # its first page: 100 ids recorded
    first_page = list(bipsync_documents(world).values())[:100]
    # A second page that ends the list at its total of 150 but repeats 50 documents already
    # read: the pages reach the total, the documents do not (50 stored ones were never seen).
    repeated = engine.Step(
        offset=100,
        items=first_page[50:],
        total=150,
        next_offset=150,
        anchor=first_page[-1]["id"],
        unstable=False,
    )
    engine.store_page(run, repeated)

    assert engine.finish(run)

    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED
    assert run.deleted_count == 0
    assert "The scan saw 100 documents where Bipsync reported 150" in run.notes
    assert live(conn) == 150


def test_an_empty_list_of_content_types_keeps_the_stored_ones(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    conn = synced(sandbox, world, team, 20, seed=31)
    stored = SyncedContentType.objects.filter(connection=conn, deleted_at__isnull=True).count()
    assert stored > 0
    path = urlsplit(world.world.api_base).path + "/v1/contenttype"
    # Two answers: the client asks once to learn the listing's shape, then pages it.
    sandbox.set_fault("empty_page", target="api", path_prefix=path, count=2)

    work(run := new_run(conn))

    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    assert f"Bipsync listed no synced content types; the {stored} stored are kept." in run.notes
    assert SyncedContentType.objects.filter(connection=conn, deleted_at__isnull=True).count() == (
        stored
    )


def test_an_item_that_does_not_fit_the_schema_is_not_written_and_its_stored_copy_stays(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    conn = synced(sandbox, world, team, 150, seed=32)
    run = new_run(conn)
    work(run, deadline=time.monotonic())  # its first page: 100 ids recorded
    rest = list(bipsync_documents(world).values())[100:]
    kept = rest[0]
    page = [
        {**kept, "title": 42},  # a stored document whose title is not a string
        {**rest[1], "id": "not-a-bipsync-id"},  # no usable id: gone past, as before
        *rest[2:],
    ]
    step = engine.Step(
        offset=100, items=page, total=150, next_offset=150, anchor=rest[-1]["id"], unstable=False
    )

    engine.store_page(run, step)
    assert engine.finish(run)

    run.refresh_from_db()
    stored = ResearchDocument.objects.seen_by(conn).get(bipsync_id=kept["id"])
    assert stored.title == kept["title"]  # not overwritten
    assert stored.deleted_at is None  # it was in the list
    assert run.passed_count == 1
    assert run.seen_count == 149
    assert run.deleted_count == 1  # the document whose id was unusable was not seen
    assert live(conn) == 149


def test_long_references_are_cut_at_the_model_fields_max_length() -> None:
    from bipsync_partner.sync.engine.items import ResearchItem, document_row, parse
    from bipsync_partner.sync.engine.sql import item_columns

    item = parse(
        ResearchItem,
        {
            "id": "a" * 24,
            "title": "T" * 1000,
            "contentType": "c" * 100,
            "user": {"_id": "u" * 100, "firstName": "Ada", "lastName": "L" * 300},
            "fields": {"x": [1]},
            "created": "2025-01-02T03:04:05.123456Z",
            "modified": "not a date",
            "ignored": {"by": "the schema"},
        },
        near=0,
    )
    assert item is None  # the malformed date makes the item not fit

    item = parse(
        ResearchItem,
        {
            "id": "a" * 24,
            "contentType": "c" * 100,
            "user": {"_id": "u" * 100, "firstName": "Ada", "lastName": "L" * 300},
            "title": "T" * 1000,
        },
        near=0,
    )
    assert item is not None
    row = document_row(item, "0" * 64)
    assert set(row) == set(item_columns(ResearchDocument))
    assert row["title"] == "T" * 1000  # a text column: no limit
    assert row["content_type_bid"] == "c" * 64
    assert row["author_bid"] == "u" * 64
    assert row["author_name"] == ("Ada " + "L" * 300)[:200]
    assert row["lookup_fields"] == {}
    assert row["bipsync_created"] is None
