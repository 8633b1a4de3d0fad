"""Acceptance: real Celery workers (prefork) deliver writes to the sandbox over real HTTP while
the sandbox drops answers after acting, fails after acting, rate-limits and slows down, and while
a worker is killed holding writes. Exactly once means: one note per external id at the sandbox."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from pytest_django.fixtures import Settings

from accounts.models import Team
from bipsync_partner.connections.models import Connection
from bipsync_partner.writes import api
from bipsync_partner.writes.models import Write
from tests.support.sandbox import Sandbox
from tests.sync.conftest import SyncWorld, Worker, wait_for
from tests.writes.conftest import (
    deliver_all,
    note_post_fault,
    service_account,
    start_worker,
    statuses,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

log = logging.getLogger(__name__)
SOURCE = "bipsync-partner"


def note_faults(sandbox: Sandbox, world: SyncWorld) -> None:
    """Small rates of every fault that matters to writes, on note creation only."""

    def fault(kind: str, **options: Any) -> None:
        note_post_fault(sandbox, world, kind, **options)

    fault("lose_response", probability=0.03)  # acted, answer dropped
    fault("status_after", status=502, probability=0.03)  # acted, then a server error
    fault("status", status=503, probability=0.02)  # refused before acting
    fault("slow", delay_ms=300, probability=0.02)
    fault("rate_limit", delay_ms=1000, count=2)


def test_a_thousand_notes_arrive_exactly_once_through_dropped_answers_and_server_errors(
    writes_worker: Worker, partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    connection = service_account(team, world)
    note_faults(sandbox, world)
    author = world.world.admin.id
    ids = [f"bulk-{n:04d}" for n in range(1000)]

    started = time.monotonic()
    with transaction.atomic():
        for external_id in ids:
            api.create_note(team, external_id=external_id, title=external_id, author=author)
    # Bipsync rotates: the access token dies mid-run, and the workers refresh it through the
    # token service (one refresh, every worker then using the rotated token).
    client_id = world.world.service_app.client_id
    wait_for(
        lambda: Write.objects.filter(team=team, status=Write.Status.DELIVERED).count() >= 300,
        timeout=300,
        what="300 notes delivered",
    )
    sandbox.expire_tokens(client_id)
    seconds = deliver_all(team, timeout=600)
    log.warning("1,000 notes delivered in %.1f s", time.monotonic() - started)

    assert statuses(team) == {Write.Status.DELIVERED: 1000}, writes_worker.log_tail()
    assert sandbox.note_counts(world.tenant, SOURCE) == dict.fromkeys(ids, 1)
    route = "POST /v2/research/note"
    assert sandbox.token_requests(client_id) >= 1
    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE
    # The faults did strike: answers lost after the note was made, 5xx after it was made.
    assert sandbox.api_requests(client_id, route, "fault_lose_response") > 0
    assert sandbox.api_requests(client_id, route, "fault_after_502") > 0
    assert sandbox.api_requests(client_id, route, "fault_429") == 2
    # Each uncertain attempt was followed by a look-up, which adopted the note.
    assert sandbox.api_requests(client_id, "GET /v2/research/note") > 0
    assert seconds < 600


def test_a_worker_killed_holding_writes_loses_and_duplicates_nothing(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team, tmp_path: Path
) -> None:
    service_account(team, world)
    # Every note is made, then its answer waits: the worker is killed while it holds writes
    # whose notes exist at Bipsync but whose ids it never learnt.
    note_post_fault(sandbox, world, "slow", when="after", delay_ms=3000)
    author = world.world.admin.id
    ids = [f"kill-{n:03d}" for n in range(40)]
    first = start_worker(sandbox, world, tmp_path, partner, concurrency=4)
    try:
        with transaction.atomic():
            for external_id in ids:
                api.create_note(team, external_id=external_id, title=external_id, author=author)
        wait_for(
            lambda: Write.objects.filter(team=team, status=Write.Status.SENDING).count() >= 4,
            timeout=60,
            what="the worker to hold four writes",
        )
        held = set(
            Write.objects.filter(team=team, status=Write.Status.SENDING).values_list(
                "external_value", flat=True
            )
        )
        # The notes of the held writes exist at the sandbox once their POSTs were processed.
        wait_for(
            lambda: len(held & set(sandbox.note_counts(world.tenant, SOURCE))) >= 1,
            timeout=30,
            what="a held write's note to exist",
        )
    finally:
        first.kill()
    sandbox.clear_faults(target="api")

    second = start_worker(sandbox, world, tmp_path, partner, concurrency=4)
    try:
        deliver_all(team, timeout=180)
    finally:
        second.stop()

    assert statuses(team) == {Write.Status.DELIVERED: len(ids)}
    assert sandbox.note_counts(world.tenant, SOURCE) == dict.fromkeys(ids, 1)
    # The held writes were sent again only after their lease ran out, and were looked up.
    retried = Write.objects.filter(team=team, external_value__in=held)
    assert all(write.attempts >= 2 for write in retried)


def test_writes_of_one_external_id_arrive_in_order_and_attachments_after_their_note(
    writes_worker: Worker, partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    service_account(team, world)
    prefix = f"/t/{world.tenant}/api/v2/research/note"
    for method in ("POST", "PUT"):
        sandbox.set_fault(
            "status_after",
            status=500,
            probability=0.3,
            target="api",
            tenant=world.tenant,
            path_prefix=prefix,
            method=method,
        )
    author = world.world.admin.id
    name = default_storage.save("memo.txt", ContentFile(b"attached " * 1000))
    versions = [f"v{n}" for n in range(1, 9)]
    with transaction.atomic():
        for index, title in enumerate(versions):
            api.create_note(
                team,
                external_id="ordered",
                title=title,
                author=author,
                attachments=[name] if index == 0 else [],
            )
        api.create_note(team, external_id="other", title="other", author=author)

    deliver_all(team, timeout=180)

    assert statuses(team) == {Write.Status.DELIVERED: len(versions) + 2}
    [note] = sandbox.notes_by_external_id(world.tenant, SOURCE, "ordered")
    applied = [next(iter(step.values())) for step in note["history"]]
    # A PUT repeated after a 5xx applies the same version twice; never an older one later.
    deduplicated = [t for i, t in enumerate(applied) if i == 0 or applied[i - 1] != t]
    assert deduplicated == versions
    assert note["title"] == "v8"
    [attachment] = note["attachments"]
    assert attachment["uploaded_size"] == len(b"attached " * 1000)
    assert sandbox.note_counts(world.tenant, SOURCE) == {"ordered": 1, "other": 1}
