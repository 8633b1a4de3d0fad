"""Redis down: every page a person can reach answers with a sentence (503), never a 500.

Redis is really unreachable here: the settings point the cache, the coordination markers and the
broker at a loopback port nothing listens on (``closed_port``). The crawl walks the URL patterns
themselves, so a page added later is covered too; calls to Bipsync go to the sandbox over HTTP.
"""

from __future__ import annotations

from collections import Counter

import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.connections import clients
from bipsync_partner.connections.models import Connection
from bipsync_partner.ops.middleware import REDIS_DOWN_SENTENCE
from bipsync_partner.sync.models import SyncRun
from tests.connections.connect_support import configure_partner, connect, new_world
from tests.ops.test_health import closed_port
from tests.support.sandbox import Sandbox, SandboxWorld
from tests.test_no_server_errors import (
    SKIPPED_PREFIXES,
    fill,
    flat_patterns,
    make_connection,
    params_for,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def redis_down(settings: Settings) -> str:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    settings.REDIS_URL = url
    settings.CELERY_BROKER_URL = url
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "LOCATION": url},
    }
    return url


@pytest.fixture
def world(sandbox: Sandbox, settings: Settings) -> SandboxWorld:
    created = new_world(sandbox)
    configure_partner(settings, sandbox, created)
    return created


def test_sync_now_answers_a_sentence_and_queues_nothing_while_redis_is_down(
    world: SandboxWorld, redis_down: str, team: Team, alice: User
) -> None:
    connection = make_connection(team, alice, world.tenant)
    client = Client()
    client.force_login(alice)

    response = client.post(f"/teams/{team.slug}/sync/{connection.pk}/now/")

    assert response.status_code == 503
    assert REDIS_DOWN_SENTENCE in response.content.decode()
    assert response["Retry-After"] == "60"
    assert not SyncRun.objects.filter(connection=connection).exists()


def test_a_person_connects_bipsync_while_redis_is_down(
    sandbox: Sandbox, world: SandboxWorld, redis_down: str, team: Team, alice: User
) -> None:
    # Nothing this process learnt earlier stands in for the cache.
    clients._held_metadata.clear()
    client = Client()
    client.force_login(alice)

    response = connect(client, sandbox, team, world, as_user=world.admin)

    assert response.status_code == 302, response.content.decode()[:500]
    connection = Connection.objects.get(team=team, user=alice)
    assert connection.status == Connection.Status.ACTIVE


def test_no_page_answers_a_server_error_while_redis_is_down(
    world: SandboxWorld,
    redis_down: str,
    team: Team,
    other_team: Team,
    alice: User,
    bob: User,
    charlie: User,
) -> None:
    mine: Connection = make_connection(team, alice, world.tenant)
    theirs = make_connection(other_team, charlie, world.tenant)
    # Finished, so that "Sync now" has to queue a new run (Redis) rather than point at this one.
    run = SyncRun.objects.create(
        connection=mine, requested_by=alice, status=SyncRun.Status.SUCCEEDED
    )
    visitors: dict[str, User | None] = {"anonymous": None, "admin": alice, "member": bob}

    answers: Counter[tuple[str, str, int]] = Counter()
    routes = [(r, p) for r, p in flat_patterns() if not r.startswith(SKIPPED_PREFIXES)]
    routes.sort(key=lambda entry: "disconnect" in entry[0] or "logout" in entry[0])
    for route, pattern in routes:
        kwargs = params_for(pattern, mine, theirs, run)[0]  # the real ids
        path = fill(route, kwargs)
        for who, user in visitors.items():
            for method in ("GET", "POST"):
                client = Client()
                if user is not None:
                    client.force_login(user)
                response = client.get(path) if method == "GET" else client.post(path)
                assert response.status_code < 500 or response.status_code == 503, (
                    f"{who} {method} {path}: {response.status_code}"
                )
                if response.status_code == 503 and path != "/readyz":
                    assert REDIS_DOWN_SENTENCE in response.content.decode(), path
                answers[(who, route, response.status_code)] += 1

    unavailable = {route for (who, route, status) in answers if status == 503}
    # The crawl met Redis where pages depend on it, and pages that do not still answered.
    assert "teams/<slug:team_slug>/sync/<uuid:connection_id>/now/" in unavailable
    assert "readyz" in unavailable
    assert answers[("admin", "teams/<slug:team_slug>/research/", 200)]
    assert answers[("member", "teams/<slug:team_slug>/sync/", 200)]
