"""API keys: a team's key reads its team only, a revoked key is refused at once, a missing
scope is a 403, and every error is a problem with a sentence."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.api.keys import NewKey, create_key, find_key
from bipsync_partner.api.models import ApiKey
from bipsync_partner.writes import api as outbox
from tests.api.conftest import document, key_client, machine
from tests.feed.waiting import eventually

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


@pytest.mark.django_db(transaction=True)  # the feed serves committed changes only
def test_a_key_of_one_team_reads_nothing_of_another(
    team: Team, other_team: Team, team_key: NewKey, other_key: NewKey
) -> None:
    conn = machine(team)
    doc = document(team, conn, "b" * 24)
    write = outbox.upsert(team, "category", source="crm", value="1", properties={"name": "x"})
    mine, theirs = key_client(team_key), key_client(other_key)

    assert [c["id"] for c in mine.get("/api/v1/connections").json()["items"]] == [str(conn.pk)]
    assert [d["id"] for d in mine.get("/api/v1/research").json()["items"]] == [doc.pk]
    changes = eventually(lambda: mine.get("/api/v1/changes").json()["entries"], bool)
    assert [c["row_id"] for c in changes] == [doc.pk]

    assert theirs.get("/api/v1/connections").json()["items"] == []
    assert theirs.get("/api/v1/research").json()["items"] == []
    assert theirs.get("/api/v1/changes").json()["entries"] == []
    for path in (
        f"/api/v1/connections/{conn.pk}",
        f"/api/v1/research/{doc.pk}",
        f"/api/v1/writes/{write.uid}",
    ):
        answer = theirs.get(path)
        assert answer.status_code == 404, path
        assert answer["Content-Type"] == PROBLEM
        # Said like an unknown id: nothing tells that it exists elsewhere.
        assert "another team" not in answer.json()["detail"]
    assert theirs.post(f"/api/v1/connections/{conn.pk}/sync").status_code == 404


def test_a_revoked_key_is_refused_at_once(team: Team, team_key: NewKey, alice: User) -> None:
    client = key_client(team_key)
    assert client.get("/api/v1/connections").status_code == 200
    team_key.key.revoke(alice)
    answer = client.get("/api/v1/connections")
    assert answer.status_code == 401
    assert answer["Content-Type"] == PROBLEM
    assert answer["WWW-Authenticate"].startswith("Bearer")
    assert "revoked" in answer.json()["detail"]


@pytest.mark.parametrize(
    "header",
    ["", "Basic dXNlcjpwYXNz", "Bearer bp_nope_nope", "Bearer nonsense", "Bearer "],
)
def test_a_missing_or_made_up_key_is_a_401(team: Team, header: str) -> None:
    client = Client(HTTP_AUTHORIZATION=header) if header else Client()
    answer = client.get("/api/v1/research")
    assert answer.status_code == 401
    assert answer["Content-Type"] == PROBLEM
    assert answer.json()["detail"]


def test_a_key_with_the_right_prefix_and_a_wrong_secret_is_refused(team_key: NewKey) -> None:
    prefix = team_key.key.prefix
    assert find_key(f"bp_{prefix}_{'x' * 43}") is None
    assert find_key(team_key.plaintext) == team_key.key


def test_a_missing_scope_is_a_403(team: Team, alice: User) -> None:
    conn = machine(team)
    reader = key_client(create_key(team, "Reader", ["read"], alice))
    assert reader.get("/api/v1/connections").status_code == 200
    for answer in (
        reader.post(f"/api/v1/connections/{conn.pk}/sync"),
        reader.post(
            "/api/v1/writes/notes",
            {"external_id": "n1", "title": "t"},
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY="k1",
        ),
    ):
        assert answer.status_code == 403
        assert answer.json()["type"].endswith("missing-scope")
        assert "'write'" in answer.json()["detail"]
    writer = key_client(create_key(team, "Writer", ["write"], alice))
    assert writer.get("/api/v1/research").status_code == 403


def test_bad_input_is_a_400_naming_the_field(team_key: NewKey) -> None:
    client = key_client(team_key)
    cases = [
        (client.get("/api/v1/research?limit=lots"), "limit"),
        (client.get("/api/v1/research?limit=0"), "limit"),
        (client.get("/api/v1/research?after=forged"), "after"),
        (client.get("/api/v1/changes?after=forged"), "after"),
        (client.get("/api/v1/research/not-a-number"), "doc_id"),
        (client.get("/api/v1/connections/not-a-uuid"), "connection_id"),
        (
            client.post(
                "/api/v1/writes/notes",
                {"external_id": "n1"},
                content_type="application/json",
                HTTP_IDEMPOTENCY_KEY="k1",
            ),
            "title",
        ),
        (
            client.post(
                "/api/v1/writes/notes",
                {"external_id": "n1", "title": "t"},
                content_type="application/json",
            ),
            "Idempotency-Key",
        ),
        (
            client.post(
                "/api/v1/writes/upserts",
                {"kind": "planet", "source": "s", "value": "v", "properties": {}},
                content_type="application/json",
                HTTP_IDEMPOTENCY_KEY="k2",
            ),
            "kind",
        ),
        (
            client.post(
                "/api/v1/writes/notes",
                "{not json",
                content_type="application/json",
                HTTP_IDEMPOTENCY_KEY="k3",
            ),
            "body",
        ),
    ]
    for answer, field in cases:
        assert answer.status_code == 400, (field, answer.content)
        assert answer["Content-Type"] == PROBLEM
        body = answer.json()
        assert {"type", "title", "status", "detail", "instance"} <= set(body)
        assert field in [e["field"] for e in body["errors"]], body
        assert field in body["detail"]


def test_unknown_addresses_and_methods_are_problems_too(team_key: NewKey) -> None:
    client = key_client(team_key)
    unknown = client.get("/api/v1/nothing-here")
    assert (unknown.status_code, unknown["Content-Type"]) == (404, PROBLEM)
    wrong = client.delete("/api/v1/research")
    assert (wrong.status_code, wrong["Content-Type"]) == (405, PROBLEM)
    assert "GET" in wrong.json()["detail"]
    assert wrong.json()["instance"] == "/api/v1/research"


def test_the_last_use_is_written_at_most_once_a_minute(
    team_key: NewKey, settings: Settings
) -> None:
    settings.API_KEY_LAST_USED_RESOLUTION_SECONDS = 60
    client = key_client(team_key)
    client.get("/api/v1/connections")
    first = ApiKey.objects.get(pk=team_key.key.pk).last_used_at
    assert first is not None
    client.get("/api/v1/connections")
    assert ApiKey.objects.get(pk=team_key.key.pk).last_used_at == first
    ApiKey.objects.filter(pk=team_key.key.pk).update(last_used_at=first - timedelta(minutes=2))
    client.get("/api/v1/connections")
    again = ApiKey.objects.get(pk=team_key.key.pk).last_used_at
    assert again is not None
    assert again > first - timedelta(seconds=1)


def test_an_installation_key_names_its_team_in_a_header(team: Team, other_team: Team) -> None:
    conn = machine(other_team)
    key = create_key(None, "Back office", ["read"])
    assert key_client(key).get("/api/v1/connections").status_code == 400
    assert key_client(key, HTTP_X_TEAM="nope").get("/api/v1/connections").status_code == 404
    listed = key_client(key, HTTP_X_TEAM=other_team.slug).get("/api/v1/connections").json()
    assert [c["id"] for c in listed["items"]] == [str(conn.pk)]
    # A team key cannot be pointed at another team.
    team_key = create_key(team, "Mine", ["read"])
    answer = key_client(team_key, HTTP_X_TEAM=other_team.slug).get("/api/v1/connections")
    assert answer.status_code == 404


def test_the_key_is_stored_as_a_hash_and_never_shown_in_its_text(team_key: NewKey) -> None:
    secret = team_key.plaintext.split("_", 2)[2]
    stored = ApiKey.objects.get(pk=team_key.key.pk)
    assert secret not in stored.secret_hash
    assert secret not in str(stored)
    assert secret not in repr(stored)
    assert len(stored.secret_hash) == 64
    assert stored.created <= timezone.now()
