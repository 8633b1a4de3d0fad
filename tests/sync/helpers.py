"""Looking at both sides of a sync: what the sandbox lists, and what the partner stored."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from django.db import connection as db
from django.utils.dateparse import parse_datetime

from bipsync_partner.sync.models import ResearchDocument
from tests.sync.conftest import SyncWorld


def machine_token(world: SyncWorld) -> str:
    response = httpx.post(
        world.world.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": world.machine_app.client_id,
            "client_secret": world.machine_app.client_secret or "",
            "scope": f"rest_api:read team_{world.team_id}",
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def bipsync_documents(world: SyncWorld) -> dict[str, dict[str, Any]]:
    """Every research document the machine application sees, read straight from the sandbox."""
    token = machine_token(world)
    found: dict[str, dict[str, Any]] = {}
    offset = 0
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
        while True:
            response = http.get(
                world.world.api_base + "/v1/research", params={"offset": offset, "limit": 100}
            )
            assert response.status_code == 200, response.text
            body = response.json()
            for item in body["results"]:
                found[item["id"]] = item
            offset += len(body["results"])
            if not body["results"] or offset >= body["total"]:
                return found


def stored_documents(connection_id: uuid.UUID) -> dict[str, ResearchDocument]:
    """The live documents the connection sees."""
    return {
        doc.bipsync_id: doc
        for doc in ResearchDocument.objects.seen_by(connection_id).filter(deleted_at__isnull=True)
    }


def row_versions(connection_id: uuid.UUID) -> dict[str, str]:
    """Each stored document of the connection's team and tenant, and each of the connection's
    sightings (keyed ``<id>/seen``), with its xmin: it changes exactly when the row is written."""
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT d.bipsync_id, d.xmin::text FROM sync_researchdocument AS d "
            "JOIN connections_connection AS c ON c.team_id = d.team_id AND c.tenant = d.tenant "
            "WHERE c.id = %s "
            "UNION ALL "
            "SELECT d.bipsync_id || '/seen', s.xmin::text FROM sync_documentsighting AS s "
            "JOIN sync_researchdocument AS d ON d.id = s.document_id WHERE s.connection_id = %s",
            [connection_id, connection_id],
        )
        return dict(cursor.fetchall())


def assert_mirrors(world: SyncWorld, connection_id: uuid.UUID) -> None:
    """The live stored rows are exactly the sandbox's documents, field for field."""
    expected = bipsync_documents(world)
    stored = stored_documents(connection_id)
    assert set(stored) == set(expected)
    for bid, item in expected.items():
        doc = stored[bid]
        assert doc.title == item["title"], bid
        assert doc.lookup_fields == item["fields"], bid
        assert doc.content_type_bid == item["contentType"], bid
        assert doc.author_bid == item["user"], bid
        assert doc.bipsync_created == parse_datetime(item["created"]), bid
        assert doc.bipsync_modified == parse_datetime(item["modified"]), bid
