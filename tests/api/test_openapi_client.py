"""The OpenAPI document validates, and a client generated from it by openapi-python-client lists
research, walks the change feed by cursor and writes a note against a live server over HTTP."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from pytest_django.live_server_helper import LiveServer

from accounts.models import Team
from bipsync_partner.api.keys import NewKey
from bipsync_partner.feed.models import FeedEntry
from bipsync_partner.sync.models import SyncedCategory, SyncedClassification
from tests.api.conftest import document, machine
from tests.feed.waiting import eventually

pytestmark = pytest.mark.django_db(transaction=True)


def openapi_document(live_server: LiveServer) -> dict[str, Any]:
    answer = httpx.get(f"{live_server.url}/api/v1/openapi.json", timeout=30)
    assert answer.status_code == 200
    found: dict[str, Any] = answer.json()
    return found


def test_the_openapi_document_is_valid_openapi_3_1(live_server: LiveServer) -> None:
    doc = openapi_document(live_server)
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    assert "/api/v1/changes" in doc["paths"]
    docs = httpx.get(f"{live_server.url}/api/v1/docs", timeout=30)
    assert docs.status_code == 200
    assert "default-src 'self'" in docs.headers["Content-Security-Policy"]


@pytest.fixture
def generated(live_server: LiveServer, tmp_path: Path) -> Iterator[ModuleType]:
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(openapi_document(live_server)))
    name = f"partner_client_{uuid.uuid4().hex[:8]}"
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(spec),
            "--output-path",
            str(tmp_path / name),
            "--meta",
            "none",
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"},
        timeout=120,
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))
        for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
            del sys.modules[module]


def test_a_generated_client_lists_walks_the_feed_and_writes(
    live_server: LiveServer, generated: ModuleType, team: Team, team_key: NewKey
) -> None:
    name = generated.__name__
    api = {
        op: importlib.import_module(f"{name}.api.{group}.{op}")
        for group, op in [
            ("research", "list_research"),
            ("research", "get_research"),
            ("changes", "list_changes"),
            ("resources", "list_categories"),
            ("resources", "get_category"),
            ("writes", "write_note"),
            ("writes", "get_write"),
        ]
    }
    models = importlib.import_module(f"{name}.models")
    conn = machine(team)
    docs = [document(team, conn, f"{i:024x}") for i in range(5)]
    client = generated.AuthenticatedClient(base_url=live_server.url, token=team_key.plaintext)

    # A list, page by page.
    seen, after = [], None
    while True:
        kwargs = {"limit": 2} if after is None else {"limit": 2, "after": after}
        page = api["list_research"].sync(client=client, **kwargs)
        assert isinstance(page, models.ResearchPage)
        seen += [item.id for item in page.items]
        after = page.next_cursor
        if not after:
            break
    assert seen == [d.pk for d in docs]
    missing = api["get_research"].sync(client=client, doc_id=10**9)
    assert isinstance(missing, models.ProblemOut)
    assert missing.status == 404

    # A cursor walk over the feed, one entry per page.
    def walk() -> list[int]:
        ids, cursor = [], None
        while True:
            kwargs = {"limit": 1} if cursor is None else {"limit": 1, "after": cursor}
            feed = api["list_changes"].sync(client=client, **kwargs)
            assert isinstance(feed, models.ChangePage)
            ids += [e.row_id for e in feed.entries]
            cursor = feed.next_cursor
            if not feed.has_more:
                return ids

    stored = FeedEntry.objects.filter(team=team).count()
    assert eventually(walk, lambda ids: len(ids) >= stored) == [d.pk for d in docs]

    # A synced resource, with what it names.
    SyncedClassification.objects.create(
        team=team, tenant="acme", bipsync_id="c" * 24, content_hash="h", name="Company"
    )
    apple = SyncedCategory.objects.create(
        team=team,
        tenant="acme",
        bipsync_id="a" * 24,
        content_hash="h",
        name="Apple",
        ticker="AAPL",
        classification_bid="c" * 24,
    )
    categories = api["list_categories"].sync(client=client)
    assert isinstance(categories, models.CategoryPage)
    assert [(c.id, c.ticker, c.classification.name) for c in categories.items] == [
        (apple.pk, "AAPL", "Company")
    ]
    assert api["get_category"].sync(client=client, category_id=apple.pk).name == "Apple"

    # A write, and its retry with the same Idempotency-Key.
    body = models.NoteIn(external_id="client-note-1", title="From the generated client")
    first = api["write_note"].sync_detailed(client=client, body=body, idempotency_key="gen-1")
    again = api["write_note"].sync_detailed(client=client, body=body, idempotency_key="gen-1")
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.parsed.id == again.parsed.id
    status = api["get_write"].sync(client=client, write_id=first.parsed.id)
    assert isinstance(status, models.WriteOut)
    assert status.status == "queued"
