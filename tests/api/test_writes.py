"""Writes through the API: the Idempotency-Key makes a retry return the first write, the same key
with another body is refused, and attachments come as base64 within a bound."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Team
from bipsync_partner.api.keys import NewKey
from bipsync_partner.api.models import IdempotencyKey
from bipsync_partner.api.tasks import prune_idempotency_keys_task
from bipsync_partner.writes.models import Write
from tests.api.conftest import key_client, machine

pytestmark = pytest.mark.django_db


def post(client: Client, path: str, body: dict[str, Any], key: str) -> Any:
    return client.post(path, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)


NOTE = {"external_id": "report-1", "title": "Q3 review", "content": "<p>Up.</p>"}


def test_the_same_key_and_body_return_the_same_write(team: Team, team_key: NewKey) -> None:
    client = key_client(team_key)
    first = post(client, "/api/v1/writes/notes", NOTE, "retry-1")
    assert first.status_code == 202, first.content
    again = post(client, "/api/v1/writes/notes", NOTE, "retry-1")
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert Write.objects.filter(team=team).count() == 1

    status = client.get(f"/api/v1/writes/{first.json()['id']}")
    assert status.status_code == 200
    assert status.json()["status"] == "queued"
    assert status.json()["link"] == ""


def test_the_same_key_with_another_body_is_a_422(team: Team, team_key: NewKey) -> None:
    client = key_client(team_key)
    assert post(client, "/api/v1/writes/notes", NOTE, "k").status_code == 202
    changed = post(client, "/api/v1/writes/notes", {**NOTE, "title": "Other"}, "k")
    assert changed.status_code == 422
    assert changed["Content-Type"] == "application/problem+json"
    assert changed.json()["type"].endswith("idempotency-key-reused")
    upsert = {"kind": "category", "source": "crm", "value": "7", "properties": {"name": "A"}}
    assert post(client, "/api/v1/writes/upserts", upsert, "k").status_code == 422
    assert Write.objects.filter(team=team).count() == 1


def test_a_key_older_than_its_retention_is_pruned_and_then_makes_a_new_write(
    team: Team, team_key: NewKey, settings: Settings
) -> None:
    settings.API_IDEMPOTENCY_KEY_HOURS = 24
    client = key_client(team_key)
    first = post(client, "/api/v1/writes/notes", NOTE, "old-key")
    kept = post(client, "/api/v1/writes/notes", {**NOTE, "external_id": "report-2"}, "new-key")
    IdempotencyKey.objects.filter(key="old-key").update(
        created=timezone.now() - timedelta(hours=25)
    )

    assert prune_idempotency_keys_task() == "1 idempotency keys removed"
    assert prune_idempotency_keys_task() == "0 idempotency keys removed"

    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new-key"]
    assert (
        post(client, "/api/v1/writes/notes", {**NOTE, "external_id": "report-2"}, "new-key").json()[
            "id"
        ]
        == kept.json()["id"]
    )
    again = post(client, "/api/v1/writes/notes", NOTE, "old-key")
    assert again.status_code == 202
    assert again.json()["id"] != first.json()["id"]


def test_idempotency_keys_are_kept_per_team(
    team: Team, other_team: Team, team_key: NewKey, other_key: NewKey
) -> None:
    mine = post(key_client(team_key), "/api/v1/writes/notes", NOTE, "shared")
    theirs = post(key_client(other_key), "/api/v1/writes/notes", NOTE, "shared")
    assert (mine.status_code, theirs.status_code) == (202, 202)
    assert mine.json()["id"] != theirs.json()["id"]
    assert IdempotencyKey.objects.filter(key="shared").count() == 2


def test_an_upsert_is_queued_and_a_refused_one_is_a_422_with_the_sentence(
    team: Team, team_key: NewKey, other_team: Team
) -> None:
    client = key_client(team_key)
    body = {"kind": "contact", "source": "crm", "value": "c-1", "properties": {"name": "Ann"}}
    made = post(client, "/api/v1/writes/upserts", body, "u1")
    assert made.status_code == 202
    assert Write.objects.get(uid=made.json()["id"]).kind == Write.Kind.UPSERT
    refused = post(client, "/api/v1/writes/upserts", {**body, "value": " "}, "u2")
    assert refused.status_code == 422
    assert "external id" in refused.json()["detail"]
    elsewhere = post(
        client,
        "/api/v1/writes/upserts",
        {**body, "connection_id": str(machine(other_team).pk)},
        "u3",
    )
    assert elsewhere.status_code == 400
    assert elsewhere.json()["errors"][0]["field"] == "connection_id"


def test_a_note_with_attachments_queues_the_note_then_each_file(
    team: Team, team_key: NewKey
) -> None:
    files = [
        {"file_name": "deck.pdf", "content_base64": base64.b64encode(b"%PDF-1.7 deck").decode()},
        {"file_name": "../../notes.txt", "content_base64": base64.b64encode(b"notes").decode()},
    ]
    answer = post(key_client(team_key), "/api/v1/writes/notes", {**NOTE, "attachments": files}, "a")
    assert answer.status_code == 202, answer.content
    note = Write.objects.get(uid=answer.json()["id"])
    attachments = list(note.dependents.order_by("id"))
    assert [a.payload["size"] for a in attachments] == [13, 5]
    assert [a["file_name"] for a in answer.json()["attachments"]] == ["deck.pdf", "notes.txt"]
    for a in attachments:
        assert a.payload["storage_name"].startswith(f"api-attachments/{team.pk}/")
        default_storage.delete(a.payload["storage_name"])


def test_attachments_that_are_not_base64_or_too_large_are_refused(
    team: Team, team_key: NewKey, settings: Settings
) -> None:
    settings.API_NOTE_ATTACHMENTS_MAX_BYTES = 10
    client = key_client(team_key)
    bad = [{"file_name": "a.txt", "content_base64": "not base64!"}]
    answer = post(client, "/api/v1/writes/notes", {**NOTE, "attachments": bad}, "b1")
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["field"] == "attachments.0.content_base64"
    big = [{"file_name": "a.txt", "content_base64": base64.b64encode(b"x" * 11).decode()}]
    answer = post(client, "/api/v1/writes/notes", {**NOTE, "attachments": big}, "b2")
    assert answer.status_code == 413
    assert "10 bytes" in answer.json()["detail"]
    assert not Write.objects.filter(team=team).exists()


def test_sync_now_queues_a_run_once_and_a_connection_that_cannot_sync_is_a_409(
    team: Team, team_key: NewKey
) -> None:
    client = key_client(team_key)
    conn = machine(team)
    first = client.post(f"/api/v1/connections/{conn.pk}/sync")
    assert first.status_code == 202
    assert first.json()["created"] is True
    second = client.post(f"/api/v1/connections/{conn.pk}/sync")
    assert (second.json()["created"], second.json()["run_id"]) == (False, first.json()["run_id"])
    listed = client.get(f"/api/v1/connections/{conn.pk}").json()
    assert listed["last_sync"]["id"] == first.json()["run_id"]
    assert listed["needs_person"] is False

    broken = machine(team, tenant="globex", status="needs_reconnect", last_error_message="Revoked.")
    refused = client.post(f"/api/v1/connections/{broken.pk}/sync")
    assert refused.status_code == 409
    assert "reconnected" in refused.json()["detail"]
    shown = client.get(f"/api/v1/connections/{broken.pk}").json()
    assert (shown["problem"], shown["health"], shown["needs_person"]) == (
        "needs_reconnect",
        "Revoked.",
        True,
    )
    # What needs a person comes first.
    order = [c["id"] for c in client.get("/api/v1/connections").json()["items"]]
    assert order == [str(broken.pk), str(conn.pk)]
