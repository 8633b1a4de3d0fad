"""Delivering writes in this process (no worker: the function the task calls), against the
sandbox over real HTTP: what is refused, what fails for good, and what updates in place."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection as db
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from pytest_django.fixtures import Settings

from accounts.models import Team
from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.store import Grant, Owner, store_token
from bipsync_partner.coordination import TenantGate
from bipsync_partner.oauth.tokens import parse_token_document
from bipsync_partner.writes import api, delivery, queueing
from bipsync_partner.writes.models import Write
from bipsync_partner.writes.signals import write_delivered
from tests.support.sandbox import Sandbox
from tests.sync.conftest import SyncWorld
from tests.writes.conftest import note_post_fault, service_account

pytestmark = pytest.mark.django_db(transaction=True)

SOURCE = "bipsync-partner"


def writes_counted(kind: str, outcome: str) -> float:
    body = Client().get("/metrics").content.decode()
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "bipsync_writes_total" and sample.labels == {
                "kind": kind,
                "outcome": outcome,
            }:
                return float(sample.value)
    return 0.0


def test_a_connection_without_the_write_scope_is_refused_with_a_sentence(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    account = service_account(team, world, scope="rest_api:read")
    write = api.create_note(team, external_id="no-scope", title="T", author=world.world.admin.id)

    assert delivery.deliver(write.pk) == "failed"

    write.refresh_from_db()
    assert write.status == Write.Status.FAILED
    assert write.error_code == "missing_write_scope"
    assert "lacks the rest_api:write scope" in write.error
    # The sentence points at the connection page's Re-consent button.
    page = f"/teams/{team.slug}/connections/{account.pk}/#scopes"
    assert f"Re-consent at Bipsync on its page ({page})" in write.error
    assert sandbox.note_counts(world.tenant, SOURCE) == {}


def test_a_team_without_a_service_account_gets_a_sentence(
    partner: Settings, world: SyncWorld, team: Team
) -> None:
    write = api.create_note(team, external_id="nobody", title="T", author=world.world.admin.id)

    delivery.deliver(write.pk)

    write.refresh_from_db()
    assert (write.status, write.error_code) == (Write.Status.FAILED, "no_service_account")
    assert "no Bipsync service account" in write.error


def test_a_validation_error_is_final_and_keeps_bipsyncs_sentence(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    service_account(team, world)
    write = api.create_note(
        team,
        external_id="bad-field",
        title="Has a field Bipsync does not know",
        author=world.world.admin.id,
        fields={"noSuchField": "x"},
    )
    partner.METRICS_BEARER_TOKEN = None
    before = writes_counted("note", "failed")

    assert delivery.deliver(write.pk) == "failed"
    # A second run (the task delivered twice) changes nothing.
    assert delivery.deliver(write.pk) == "final"

    write.refresh_from_db()
    assert (write.status, write.attempts, write.error_code) == (Write.Status.FAILED, 1, "http_400")
    assert "noSuchField is not a field of" in write.error
    assert writes_counted("note", "failed") == before + 1
    assert write.error.startswith("Bipsync refused POST /v2/research/note with HTTP 400")
    assert sandbox.note_counts(world.tenant, SOURCE) == {}


def test_writing_an_external_id_again_updates_its_note(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    service_account(team, world)
    author = world.world.admin.id
    first = api.create_note(team, external_id="memo-7", title="Draft", author=author)
    second = api.create_note(
        team, external_id="memo-7", title="Final", content="<p>v2</p>", author=author
    )

    # In order: the second waits for the first.
    assert delivery.deliver(second.pk) == "waiting for an earlier write"
    assert delivery.deliver(first.pk) == "delivered"
    assert delivery.deliver(second.pk) == "delivered"

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.bipsync_id == second.bipsync_id != ""
    [note] = sandbox.notes_by_external_id(world.tenant, SOURCE, "memo-7")
    assert (note["title"], note["content"]) == ("Final", "<p>v2</p>")
    assert note["history"] == [{"created": "Draft"}, {"updated": "Final"}]


def test_a_note_whose_answer_was_lost_is_adopted_not_created_again(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    service_account(team, world)
    note_post_fault(sandbox, world, "lose_response", count=1)
    write = api.create_note(team, external_id="lost-1", title="Once", author=world.world.admin.id)

    assert delivery.deliver(write.pk) == "retry"
    write.refresh_from_db()
    assert (write.status, write.uncertain, write.error_code) == (
        Write.Status.QUEUED,
        True,
        "outcome_unknown",
    )
    Write.objects.filter(pk=write.pk).update(next_attempt_at=write.created)
    assert delivery.deliver(write.pk) == "delivered"

    assert sandbox.note_counts(world.tenant, SOURCE) == {"lost-1": 1}
    client_id = world.world.service_app.client_id
    assert sandbox.api_requests(client_id, "GET /v2/research/note") == 1


def test_only_the_claim_waits_for_the_disk_not_the_outcome(
    partner: Settings, world: SyncWorld, team: Team
) -> None:
    service_account(team, world)
    seen: list[str] = []

    def note_setting(**_: object) -> None:
        with db.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            seen.append(cursor.fetchone()[0])

    write = api.create_note(team, external_id="flush-1", title="Once", author=world.world.admin.id)
    write_delivered.connect(note_setting, dispatch_uid="flush-test")
    try:
        assert delivery.deliver(write.pk) == "delivered"
    finally:
        write_delivered.disconnect(dispatch_uid="flush-test")

    # The outcome's transaction did not wait; the session (and so the next claim) still does.
    assert seen == ["off"]
    with db.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"


def recorded_groups() -> tuple[list[list[str]], object]:
    """The external ids of each ``write_delivered`` the run sends, and the receiver to disconnect."""
    groups: list[list[str]] = []

    def note_group(writes: list[Write], **_: object) -> None:
        groups.append([write.external_value for write in writes])

    write_delivered.connect(note_group, dispatch_uid="group-test")
    return groups, note_group


def test_a_run_claims_a_group_and_records_its_outcomes_together(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    service_account(team, world)
    partner.WRITES_GROUP_SIZE = 3
    author = world.world.admin.id
    for n in range(5):
        api.create_note(team, external_id=f"group-{n}", title=f"Note {n}", author=author)
    groups, _ = recorded_groups()
    try:
        result = delivery.deliver_due(team.pk)
    finally:
        write_delivered.disconnect(dispatch_uid="group-test")

    assert result.attempted == 5
    # Two claims (3, then 2), each group's outcomes in one transaction.
    assert sorted(len(group) for group in groups) == [2, 3]
    assert sorted(name for group in groups for name in group) == [f"group-{n}" for n in range(5)]
    assert sandbox.note_counts(world.tenant, SOURCE) == {f"group-{n}": 1 for n in range(5)}
    stored = Write.objects.filter(team=team)
    assert {(w.status, w.attempts, w.uncertain, w.claim_token) for w in stored} == {
        (Write.Status.DELIVERED, 1, False, None)
    }
    assert all(w.bipsync_id for w in stored)


def test_writes_a_slow_group_did_not_reach_in_half_their_lease_go_back_unsent(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    service_account(team, world)
    partner.WRITES_GROUP_SIZE = 3
    partner.WRITES_LEASE_SECONDS = 2
    # The first note's answer takes more than half the lease: the two claimed behind it are
    # given back rather than sent on a lease that may run out meanwhile.
    note_post_fault(sandbox, world, "slow", delay_ms=1300, count=1)
    author = world.world.admin.id
    for n in range(3):
        api.create_note(team, external_id=f"slow-{n}", title=f"Note {n}", author=author)
    groups, _ = recorded_groups()
    try:
        assert delivery.deliver_due(team.pk).attempted == 3
    finally:
        write_delivered.disconnect(dispatch_uid="group-test")

    # The run starts its group at a random place, so which note was slow is not known.
    assert [len(group) for group in groups] == [1, 2]
    assert sorted(name for group in groups for name in group) == ["slow-0", "slow-1", "slow-2"]
    # Given back as they were: no attempt counted and nothing looked up for the unsent ones.
    assert sorted(Write.objects.filter(team=team).values_list("attempts", flat=True)) == [1, 1, 1]
    client_id = world.world.service_app.client_id
    assert sandbox.api_requests(client_id, "GET /v2/research/note") == 0
    assert sandbox.note_counts(world.tenant, SOURCE) == {f"slow-{n}": 1 for n in range(3)}


def test_a_delivered_mark_lost_in_a_database_crash_is_adopted_not_sent_twice(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    service_account(team, world)
    write = api.create_note(team, external_id="crash-1", title="Once", author=world.world.admin.id)
    assert delivery.deliver(write.pk) == "delivered"
    write.refresh_from_db()
    delivered_as = write.bipsync_id

    # What a crash before the outcome's flush leaves: the synchronous claim's row, lease lapsed.
    Write.objects.filter(pk=write.pk).update(
        status=Write.Status.SENDING,
        uncertain=True,
        bipsync_id="",
        finished_at=None,
        lease_until=timezone.now() - timedelta(seconds=1),
    )
    assert delivery.deliver(write.pk) == "delivered"

    write.refresh_from_db()
    assert write.bipsync_id == delivered_as
    assert sandbox.note_counts(world.tenant, SOURCE) == {"crash-1": 1}


def test_an_attachment_follows_its_note_streamed_with_its_checksum(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    service_account(team, world)
    data = b"%PDF-1.7 " + bytes(range(256)) * 5000
    name = default_storage.save("reports/q3.pdf", ContentFile(data))
    note = api.create_note(
        team,
        external_id="with-pdf",
        title="Q3",
        author=world.world.admin.id,
        attachments=[name],
    )
    [attachment] = note.dependents.all()

    assert delivery.deliver(attachment.pk) == "waiting for an earlier write"
    assert delivery.deliver(note.pk) == "delivered"
    assert delivery.deliver(attachment.pk) == "delivered"

    [stored] = sandbox.notes_by_external_id(world.tenant, SOURCE, "with-pdf")
    [sent] = stored["attachments"]
    assert (sent["file_name"], sent["uploaded_size"]) == ("q3.pdf", len(data))
    assert sent["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_file_changed_after_the_write_was_asked_for_is_not_sent(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    service_account(team, world)
    name = default_storage.save("a.txt", ContentFile(b"original bytes"))
    note = api.create_note(
        team, external_id="changed", title="T", author=world.world.admin.id, attachments=[name]
    )
    [attachment] = note.dependents.all()
    with default_storage.open(name, "wb") as handle:
        handle.write(b"altered bytes!")
    delivery.deliver(note.pk)

    assert delivery.deliver(attachment.pk) == "failed"

    attachment.refresh_from_db()
    assert "changed after the write was asked for" in attachment.error
    [stored] = sandbox.notes_by_external_id(world.tenant, SOURCE, "changed")
    assert [a["uploaded_size"] for a in stored["attachments"]] == [None]


def test_bad_input_is_refused_before_anything_is_stored(
    partner: Settings, world: SyncWorld, team: Team
) -> None:
    partner.WRITES_ATTACHMENT_MAX_BYTES = 10
    big = default_storage.save("big.bin", ContentFile(b"x" * 11))

    with pytest.raises(api.WriteRefused, match="larger than the 10 bytes"):
        api.create_note(team, external_id="big", title="T", attachments=[big])
    with pytest.raises(api.WriteRefused, match="not in the app's storage"):
        api.create_note(team, external_id="gone", title="T", attachments=["missing.pdf"])
    with pytest.raises(api.WriteRefused, match="external id"):
        api.create_note(team, external_id="", title="T")
    with pytest.raises(api.WriteRefused, match="kind must be one of"):
        api.upsert(team, "planet", source="crm", value="x", properties={})

    assert not Write.objects.exists()


def test_an_upsert_sent_twice_leaves_one_record(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    service_account(team, world)
    # The first answer is lost after Bipsync created the record.
    sandbox.set_fault(
        "lose_response",
        target="api",
        tenant=world.tenant,
        path_prefix=f"/t/{world.tenant}/api/v3/ingest",
        count=1,
    )
    first = api.upsert(
        team,
        "category",
        source="crm",
        value="acme",
        document_type="category",
        properties={"name": "Acme Corp"},
    )
    second = api.upsert(
        team,
        "category",
        source="crm",
        value="acme",
        document_type="category",
        properties={"ticker": "ACME"},
    )

    assert delivery.deliver(first.pk) == "delivered"
    assert delivery.deliver(second.pk) == "delivered"

    assert sandbox.ingest_counts(world.tenant, "crm") == {"acme": 1}
    [record] = sandbox.ingest_records(world.tenant, "crm", "acme")
    assert (record["name"], record["ticker"]) == ("Acme Corp", "ACME")
    first.refresh_from_db()
    assert first.bipsync_id == record["id"]


def test_an_upsert_of_an_unknown_id_without_a_type_fails_with_bipsyncs_sentence(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    service_account(team, world)
    write = api.upsert(team, "contact", source="crm", value="nobody", properties={"name": "N"})

    assert delivery.deliver(write.pk) == "failed"

    write.refresh_from_db()
    assert "give documentType to create one" in write.error
    assert sandbox.ingest_counts(world.tenant, "crm") == {}


def test_a_403_is_final_and_says_the_address_is_not_allow_listed(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    service_account(team, world)
    sandbox.set_allowlist(world.tenant, ["10.99.0.0/16"])
    write = api.create_note(team, external_id="blocked", title="T", author=world.world.admin.id)
    try:
        assert delivery.deliver(write.pk) == "failed"
    finally:
        sandbox.set_allowlist(world.tenant, [])

    write.refresh_from_db()
    assert write.error_code == "ip_not_allow_listed"
    assert "not allow-listed" in write.error


def test_a_429_holds_back_every_write_to_the_tenant(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    partner.SYNC_MAX_INLINE_WAIT_SECONDS = 1
    service_account(team, world)
    sandbox.set_fault(
        "rate_limit",
        target="api",
        tenant=world.tenant,
        method="POST",
        delay_ms=20000,
        count=1,
    )
    author = world.world.admin.id
    first = api.create_note(team, external_id="limited-1", title="T", author=author)
    second = api.create_note(team, external_id="limited-2", title="T", author=author)

    assert delivery.deliver(first.pk) == "retry"
    # Another write (another worker) to the same tenant does not even try.
    assert delivery.deliver(second.pk) == "retry"

    assert TenantGate(world.tenant).remaining() > 15
    client_id = world.world.service_app.client_id
    assert sandbox.api_requests(client_id, "POST /v2/research/note", outcome=None) == 1
    for write in (first, second):
        write.refresh_from_db()
        assert write.status == Write.Status.QUEUED
        assert write.error_code == "rate_limited"
        assert (write.next_attempt_at - timezone.now()).total_seconds() > 15


def test_the_sweep_queues_a_due_write_whose_queueing_was_lost_once(
    partner: Settings, world: SyncWorld, team: Team
) -> None:
    # Two writes of one external id (no worker runs here: their queued tasks are never taken).
    api.create_note(team, external_id="lost-queue", title="T", author="x" * 24)
    api.create_note(team, external_id="lost-queue", title="T2", author="x" * 24)
    waiting = api.create_note(team, external_id="not-due", title="T", author="x" * 24)
    Write.objects.filter(pk=waiting.pk).update(
        next_attempt_at=timezone.now() + timedelta(minutes=5)
    )

    first = queueing.sweep()
    second = queueing.sweep()

    # Only the head of its ordering key, and only once while its task waits.
    assert (first.queued, second.queued) == (1, 0)


def test_a_refused_write_goes_again_once_the_connection_can_write(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    connection = service_account(team, world, scope="rest_api:read")
    write = api.create_note(team, external_id="later", title="T", author=world.world.admin.id)
    delivery.deliver(write.pk)
    # Reconnected with the write scope.
    connection.delete()
    fresh = service_account(team, world)
    write.refresh_from_db()

    api.send_again(write)
    assert delivery.deliver(write.pk) == "delivered"

    write.refresh_from_db()
    assert (write.status, write.connection_id) == (Write.Status.DELIVERED, fresh.pk)
    assert sandbox.note_counts(world.tenant, SOURCE) == {"later": 1}


def reconnect(connection: Connection, world: SyncWorld) -> None:
    """New tokens on the connection from a fresh approval at the sandbox, stored the way every
    reconnect (browser, device or machine) stores them."""
    app = world.world.service_app
    issued = world.world.connect(app)
    token = parse_token_document(
        issued, status=200, received_at=timezone.now(), requested_scopes=app.scopes
    )
    owner = Owner.of(
        team=connection.team, user=None, tenant=connection.tenant, kind=connection.kind
    )
    assert store_token(owner, Grant.of(token), actor=None, target=connection).reconnected


def test_a_write_waiting_for_a_reconnect_goes_as_soon_as_the_connection_is_reconnected(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    # A retry's wait far longer than the test: only the reconnect can make the write due.
    partner.WRITES_BACKOFF_BASE_MS = partner.WRITES_BACKOFF_CAP_MS = 600_000
    connection = service_account(team, world)
    Connection.objects.filter(pk=connection.pk).update(status=Connection.Status.NEEDS_RECONNECT)
    write = api.create_note(team, external_id="waits", title="T", author=world.world.admin.id)
    assert delivery.deliver_due(team.pk).attempted == 1
    write.refresh_from_db()
    assert (write.status, write.error_code) == (Write.Status.QUEUED, "needs_reconnect")
    assert delivery.deliver_due(team.pk).attempted == 0  # waiting

    reconnect(connection, world)

    assert delivery.deliver_due(team.pk).attempted == 1
    write.refresh_from_db()
    assert write.status == Write.Status.DELIVERED, write.error
    assert sandbox.note_counts(world.tenant, SOURCE) == {"waits": 1}


def test_a_cancelled_write_is_never_sent_and_lets_the_next_one_go(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    service_account(team, world)
    author = world.world.admin.id
    first = api.create_note(team, external_id="c", title="Cancelled", author=author)
    second = api.create_note(team, external_id="c", title="Kept", author=author)

    assert api.cancel(first) is True
    assert delivery.deliver(first.pk) == "final"
    assert delivery.deliver(second.pk) == "delivered"
    assert api.cancel(second) is False

    [note] = sandbox.notes_by_external_id(world.tenant, SOURCE, "c")
    assert note["history"] == [{"created": "Kept"}]
    with pytest.raises(api.WriteRefused, match="Only a failed write"):
        api.send_again(second)
