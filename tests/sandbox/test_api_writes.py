"""The sandbox's write side over real HTTP: notes with external ids (create, look up, update),
attachments (metadata, then streamed bytes), upserts by external id, and the faults writes meet."""

from __future__ import annotations

import hashlib
import os

import httpx

from tests.sandbox.research_api import READ, Api, service_token, team_token
from tests.support.sandbox import Sandbox, SandboxWorld

SOURCE = "partner-test"


def _lookup(api: Api, value: str) -> httpx.Response:
    return api.http.get(
        f"{api.base}/v2/research/note",
        params={"externalIds.source": SOURCE, "externalIds.value": value},
        headers=api.headers,
    )


def _create(api: Api, world: SandboxWorld, value: str, title: str) -> httpx.Response:
    return api.post(
        "/v2/research/note",
        {
            "user": world.admin.id,
            "title": title,
            "content": f"<p>{title}</p>",
            "externalIds": [{"source": SOURCE, "value": value}],
        },
    )


def test_a_note_is_found_by_its_external_id_and_updated_in_place(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    api = Api(world, service_token(world))
    created = _create(api, world, "n-1", "First draft")
    assert created.status_code == 201, created.text
    note_id = created.json()["id"]
    assert created.json()["externalIds"] == [{"source": SOURCE, "value": "n-1"}]

    found = _lookup(api, "n-1")
    missing = _lookup(api, "n-2")
    updated = world.http.put(
        f"{world.api_base}/v2/research/note/{note_id}",
        json={"title": "Final", "content": "<p>Final</p>"},
        headers=api.headers,
    )

    assert [item["id"] for item in found.json()["results"]] == [note_id]
    assert missing.json()["total"] == 0
    assert updated.status_code == 200, updated.text
    assert sandbox.note_counts(world.tenant, SOURCE) == {"n-1": 1}
    [note] = sandbox.notes_by_external_id(world.tenant, SOURCE, "n-1")
    assert (note["title"], note["content"]) == ("Final", "<p>Final</p>")
    assert note["history"] == [{"created": "First draft"}, {"updated": "Final"}]
    # Created notes are research like any other: the sync's listing shows them.
    assert note_id in {item["id"] for item in api.page(limit=100)["results"]}


def test_an_attachment_takes_its_bytes_streamed_and_keeps_their_size_and_checksum(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    api = Api(world, service_token(world))
    note_id = _create(api, world, "with-file", "Has a file").json()["id"]
    data = os.urandom(3 * 256 * 1024 + 17)
    meta = api.post(
        f"/v2/research/note/{note_id}/attachment",
        {"fileName": "report.pdf", "length": len(data), "user": world.admin.id},
    )
    assert meta.status_code == 201, meta.text
    url = meta.json()["uploadUrl"]

    short = world.http.put(url, content=data[:-1], headers=api.headers)
    uploaded = world.http.put(
        url,
        content=iter([data[:1000], data[1000:]]),
        headers={**api.headers, "Content-Length": str(len(data))},
    )

    assert short.status_code == 400
    assert "length" in short.json()["error_description"]
    assert uploaded.status_code == 200, uploaded.text
    [note] = sandbox.notes_by_external_id(world.tenant, SOURCE, "with-file")
    [attachment] = note["attachments"]
    assert attachment["uploaded_size"] == len(data)
    assert attachment["sha256"] == hashlib.sha256(data).hexdigest()
    listed = api.get(f"/v2/research/note/{note_id}/attachment").json()["results"]
    assert listed[0]["uploaded"] is True


def test_an_upsert_updates_the_one_match_creates_only_with_a_type_and_refuses_ambiguity(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    api = Api(world, team_token(world))

    without_type = api.post(f"/v3/ingest/{SOURCE}/acme", {"name": "Acme"})
    created = api.post(f"/v3/ingest/{SOURCE}/acme", {"documentType": "category", "name": "Acme"})
    updated = api.post(f"/v3/ingest/{SOURCE}/acme", {"ticker": "ACME"})
    sandbox.seed_ingest_record(world.tenant, SOURCE, "twice", "contact")
    sandbox.seed_ingest_record(world.tenant, SOURCE, "twice", "contact")
    ambiguous = api.post(f"/v3/ingest/{SOURCE}/twice", {"name": "Who"})

    assert without_type.status_code == 404
    assert "documentType" in without_type.json()["error_description"]
    assert created.status_code == 201
    assert updated.status_code == 200
    assert updated.json()["id"] == created.json()["id"]
    assert ambiguous.status_code == 409
    assert sandbox.ingest_counts(world.tenant, SOURCE) == {"acme": 1, "twice": 2}
    [record] = sandbox.ingest_records(world.tenant, SOURCE, "acme")
    assert (record["name"], record["ticker"], record["writes"]) == ("Acme", "ACME", 2)


def test_writes_need_the_write_scope(sandbox_world: SandboxWorld) -> None:
    world = sandbox_world
    api = Api(world, service_token(world, scope=READ))

    response = _create(api, world, "no-scope", "Refused")
    upsert = api.post(f"/v3/ingest/{SOURCE}/x", {"documentType": "project"})

    assert response.status_code == 401
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert upsert.status_code == 401


def test_a_note_created_before_a_lost_or_failed_answer_exists_once(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    api = Api(world, service_token(world))
    prefix = f"/t/{world.tenant}/api/v2/research/note"
    sandbox.set_fault(
        "lose_response",
        target="api",
        path_prefix=prefix,
        method="POST",
        count=1,
        tenant=world.tenant,
    )
    try:
        _create(api, world, "lost", "Lost answer")
        lost_error = None
    except httpx.TransportError as exc:
        lost_error = exc
    sandbox.set_fault(
        "status_after",
        target="api",
        status=502,
        path_prefix=prefix,
        method="POST",
        count=1,
        tenant=world.tenant,
    )
    failed = _create(api, world, "failed", "Failed answer")

    assert lost_error is not None
    assert failed.status_code == 502
    assert sandbox.note_counts(world.tenant, SOURCE) == {"lost": 1, "failed": 1}


def test_a_fault_with_a_probability_hits_only_some_requests(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    api = Api(world, team_token(world))
    sandbox.set_fault(
        "status",
        target="api",
        status=503,
        probability=0.5,
        tenant=world.tenant,
        path_prefix=f"/t/{world.tenant}/api/v1/research",
    )
    try:
        statuses = [api.get("/v1/research").status_code for _ in range(40)]
    finally:
        sandbox.clear_faults(target="api")
    assert 0 < statuses.count(503) < 40
    assert statuses.count(200) + statuses.count(503) == 40
