"""Rules-engine webhooks as a hint: the receiver trusts nothing but its address's key and the
ids in the body, and the task stores only what Bipsync answers to the connection's own token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.celery import app as celery_app
from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.webhooks import WebhookReceiver, rotate
from bipsync_partner.sync import hints
from bipsync_partner.sync.engine.documents import store_documents
from bipsync_partner.sync.models import DocumentChange, DocumentSighting, ResearchDocument
from tests.conftest import signed_in
from tests.support.sandbox import Sandbox
from tests.sync.conftest import SyncWorld
from tests.sync.fresh_support import create_note, fresh_connection, make_fresh_world
from tests.sync.test_engine import new_run, run_to_end

pytestmark = pytest.mark.django_db(transaction=True)

BODY = b'{"event": "created", "document": "%s"}'


@pytest.fixture
def world(sandbox: Sandbox) -> Iterator[SyncWorld]:
    made = make_fresh_world(sandbox)
    yield made
    made.world.http.close()


def hook_path(connection: Connection) -> str:
    return f"/webhooks/bipsync/{connection.pk}/"


def call(connection: Connection, key: str, body: bytes, **extra: Any) -> Any:
    return Client().post(
        f"{hook_path(connection)}?key={key}", body, content_type="application/json", **extra
    )


def test_a_wrong_key_and_an_unknown_connection_get_the_same_404(
    partner: Settings, world: SyncWorld, team: Team
) -> None:
    conn = fresh_connection(team, world)
    key = rotate(conn.pk, None)
    other = fresh_connection(team, world, client_id="another-client")

    wrong_key = call(conn, key[:-2] + "xx", BODY % b"0" * 24)
    unknown = call(other, key, BODY % b"0" * 24)
    no_key = Client().post(hook_path(conn), b"{}", content_type="application/json")

    assert wrong_key.status_code == unknown.status_code == no_key.status_code == 404
    assert wrong_key.content == unknown.content == no_key.content
    assert "no webhook receiver" in wrong_key.json()["message"]


@pytest.fixture
def eager_tasks() -> Iterator[None]:
    """Tasks run where they are queued: the call's hint is followed within the request."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


def test_a_call_with_the_right_key_gets_202_and_the_named_note_is_stored(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team, eager_tasks: None
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 10, seed=40)
    conn = fresh_connection(team, world)
    run_to_end(new_run(conn))
    key = rotate(conn.pk, None)
    note = create_note(world, "Announced by a rule")

    answer = call(conn, key, BODY % note.encode())

    assert answer.status_code == 202
    assert answer.json() == {"accepted": 1}
    assert ResearchDocument.objects.get(bipsync_id=note).title == "Announced by a rule"


def test_only_lowercase_24_hex_ids_are_taken_from_a_body() -> None:
    body = (
        b'{"event": "modified", "document": "64b7f0c2a1b2c3d4e5f60718", '
        b'"title": "<script>alert(1)</script>", "also": "64B7F0C2A1B2C3D4E5F60718 not-hex-'
        b'64b7f0c2a1b2c3d4e5f6071 64b7f0c2a1b2c3d4e5f607189"}'
    )

    assert hints.document_ids(body, 100) == ["64b7f0c2a1b2c3d4e5f60718"]


def test_an_xml_body_is_read_for_ids_too_and_bounded_in_their_number() -> None:
    ids = [f"{n:024x}" for n in range(1, 8)]
    body = "<event><document>" + "</document><document>".join(ids) + "</document></event>"

    assert hints.document_ids(body.encode(), 5) == ids[:5]


def test_an_oversized_body_gets_413_and_nothing_is_fetched(
    partner: Settings,
    sandbox: Sandbox,
    world: SyncWorld,
    team: Team,
    settings: Settings,
    eager_tasks: None,
) -> None:
    settings.BIPSYNC_WEBHOOK_MAX_BODY_BYTES = 100
    conn = fresh_connection(team, world)
    key = rotate(conn.pk, None)
    note = create_note(world, "Too long an announcement")
    before = sandbox.api_requests(world.machine_app.client_id, "POST /v1/graphql", outcome=None)

    answer = call(conn, key, b'{"document": "%s", "pad": "%s"}' % (note.encode(), b"x" * 200))

    assert answer.status_code == 413
    assert "at most 100 bytes" in answer.json()["message"]
    after = sandbox.api_requests(world.machine_app.client_id, "POST /v1/graphql", outcome=None)
    assert after == before
    assert not ResearchDocument.objects.filter(bipsync_id=note).exists()


def test_calls_over_the_connection_s_rate_get_429_with_retry_after(
    partner: Settings, world: SyncWorld, team: Team, settings: Settings
) -> None:
    settings.BIPSYNC_WEBHOOK_RATE_LIMIT = 2
    conn = fresh_connection(team, world)
    key = rotate(conn.pk, None)

    answers = [call(conn, key, b"{}").status_code for _ in range(3)]
    last = call(conn, key, b"{}")

    assert answers == [202, 202, 429]
    assert last.status_code == 429
    assert 0 < int(last["Retry-After"]) <= settings.BIPSYNC_WEBHOOK_RATE_WINDOW_SECONDS


def test_an_admin_makes_an_address_shown_once_and_a_new_one_retires_it(
    partner: Settings, world: SyncWorld, team: Team, alice: User, bob: User
) -> None:
    conn = fresh_connection(team, world)
    admin = signed_in(alice)
    detail = admin.get(f"/teams/{team.slug}/connections/{conn.pk}/")
    assert "Make an address" in detail.content.decode()
    assert "{{document._id}}" in detail.content.decode()
    url = f"/teams/{team.slug}/sync/{conn.pk}/webhook/"

    assert signed_in(bob).post(url).status_code == 403
    first = admin.post(url)
    second = admin.post(url)

    assert first.status_code == second.status_code == 200
    assert "no-store" in first["Cache-Control"]
    keys = [
        re.search(r"\?key=([A-Za-z0-9_-]+)", page.content.decode()).group(1)  # type: ignore[union-attr]
        for page in (first, second)
    ]
    assert keys[0] != keys[1]
    assert call(conn, keys[0], b"{}").status_code == 404
    assert call(conn, keys[1], b"{}").status_code == 202
    stored = WebhookReceiver.objects.get(connection=conn)
    assert keys[1] not in stored.token_digest
    again = admin.get(f"/teams/{team.slug}/connections/{conn.pk}/").content.decode()
    assert keys[1] not in again
    assert "Make a new address" in again


def test_a_hint_stores_the_named_document_as_bipsync_gives_it_to_the_token(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    sandbox.generate_research(world.tenant, world.team_id, 20, seed=41)
    conn = fresh_connection(team, world)
    run_to_end(new_run(conn))
    note = create_note(world, "Hinted note")

    result = hints.refetch(conn.pk, [note])

    assert (result.stored, result.unseen, result.skipped) == (1, 0, "")
    assert ResearchDocument.objects.get(bipsync_id=note).title == "Hinted note"
    run_to_end(run := new_run(conn))
    assert (run.created_count, run.updated_count) == (0, 0)


def test_a_forged_hint_naming_a_document_the_token_cannot_read_stores_nothing(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    conn = fresh_connection(team, world)
    elsewhere = make_fresh_world(sandbox)
    secret = create_note(elsewhere, "Another customer's note")

    result = hints.refetch(conn.pk, [secret])

    assert result.stored == 0
    assert not ResearchDocument.objects.filter(bipsync_id=secret).exists()
    assert not DocumentSighting.objects.filter(connection=conn).exists()


def test_a_hint_for_a_document_bipsync_no_longer_gives_marks_it_deleted(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    conn = fresh_connection(team, world)
    gone = "0123456789abcdef01234567"
    store_documents(conn, [{"id": gone, "title": "Deleted at Bipsync", "fields": {}}])

    result = hints.refetch(conn.pk, [gone])

    assert result.unseen == 1
    document = ResearchDocument.objects.get(bipsync_id=gone)
    assert document.deleted_at is not None
    assert DocumentChange.objects.filter(document=document, changes={"deleted": True}).exists()
