"""Delivering writes in this process (no worker: the function the task calls), against the
sandbox over real HTTP: what is refused, what fails for good, and what updates in place."""

from __future__ import annotations

import hashlib

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from pytest_django.fixtures import Settings

from accounts.models import Team
from bipsync_partner.writes import api, delivery
from bipsync_partner.writes.models import Write
from tests.support.sandbox import Sandbox
from tests.sync.conftest import SyncWorld
from tests.writes.conftest import service_account

pytestmark = pytest.mark.django_db(transaction=True)

SOURCE = "bipsync-partner"


def test_a_connection_without_the_write_scope_is_refused_with_a_sentence(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team
) -> None:
    service_account(team, world, scope="rest_api:read")
    write = api.create_note(team, external_id="no-scope", title="T", author=world.world.admin.id)

    assert delivery.deliver(write.pk) == "failed"

    write.refresh_from_db()
    assert write.status == Write.Status.FAILED
    assert write.error_code == "missing_write_scope"
    assert "lacks the rest_api:write scope" in write.error
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

    assert delivery.deliver(write.pk) == "failed"
    # A second run (the task delivered twice) changes nothing.
    assert delivery.deliver(write.pk) == "final"

    write.refresh_from_db()
    assert (write.status, write.attempts, write.error_code) == (Write.Status.FAILED, 1, "http_400")
    assert "noSuchField is not a field of" in write.error
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
    sandbox.set_fault(
        "lose_response",
        target="api",
        tenant=world.tenant,
        method="POST",
        path_prefix=f"/t/{world.tenant}/api/v2/research/note",
        count=1,
    )
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
