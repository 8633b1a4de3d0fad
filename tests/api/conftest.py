"""API keys for the named people's teams, and a client that presents one."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from accounts.models import Team, User
from bipsync_partner.api.keys import NewKey, create_key
from bipsync_partner.connections.models import Connection
from bipsync_partner.sync.models import DocumentSighting, ResearchDocument


def key_client(key: NewKey | str, **headers: Any) -> Client:
    plaintext = key if isinstance(key, str) else key.plaintext
    return Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}", **headers)


@pytest.fixture
def team_key(team: Team, alice: User) -> NewKey:
    return create_key(team, "Export", ["read", "write"], alice)


@pytest.fixture
def other_key(other_team: Team, charlie: User) -> NewKey:
    return create_key(other_team, "Globex export", ["read", "write"], charlie)


def machine(team: Team, **fields: Any) -> Connection:
    values: dict[str, Any] = {
        "team": team,
        "tenant": "acme",
        "kind": Connection.Kind.CLIENT_CREDENTIALS,
        "client_id": "customer-app",
        "client_secret": "not-a-real-secret",
        "bipsync_team_id": "a" * 24,
        "scopes": "rest_api:read rest_api:write",
        "subject_name": "Research export",
    }
    values.update(fields)
    return Connection.objects.create(**values)


def document(team: Team, seen_by: Connection, bid: str, **fields: Any) -> ResearchDocument:
    """A document and its sighting in one transaction, as a sync page writes them (apart, the
    feed would say twice that the team can read it: created, then changed when sighted)."""
    with transaction.atomic():
        return _document(team, seen_by, bid, **fields)


def _document(team: Team, seen_by: Connection, bid: str, **fields: Any) -> ResearchDocument:
    doc = ResearchDocument.objects.create(
        team=team,
        tenant=seen_by.tenant,
        bipsync_id=bid,
        content_hash=fields.pop("content_hash", "h1"),
        title=fields.pop("title", f"Note {bid[:6]}"),
        **fields,
    )
    DocumentSighting.objects.create(document=doc, connection=seen_by)
    return doc
