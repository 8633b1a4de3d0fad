"""Connect is rate-limited per user and per team (Redis), and the pending authorizations waiting
at once are capped per user and per team (PostgreSQL): over a bound, a 429 page with a sentence
and Retry-After, and no pending authorization stored."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Membership, Team, User
from bipsync_partner.connections.pending import PendingAuthorizationRecord
from tests.conftest import PASSWORD, signed_in
from tests.connections.connect_support import configure_partner, new_world
from tests.support.sandbox import Sandbox, SandboxWorld, free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(sandbox: Sandbox, settings: Settings) -> SandboxWorld:
    created = new_world(sandbox)
    configure_partner(settings, sandbox, created)
    # Counters of this test only, whatever other tests or test runs counted in the same Redis.
    settings.COORDINATION_KEY_PREFIX = f"test-connect-limits-{uuid.uuid4().hex}"
    return created


def click_connect(client: Client, team: Team, world: SandboxWorld) -> Any:
    return client.post(
        f"/teams/{team.slug}/connections/connect/", {"tenant": world.tenant, "kind": "user"}
    )


def assert_too_many(response: Any, sentence: str) -> None:
    assert response.status_code == 429
    assert sentence in response.content.decode()
    assert 1 <= int(response["Retry-After"]) <= 3600


def member(team: Team, name: str) -> User:
    user = User.objects.create_user(f"{name}@example.com", PASSWORD, name=name)
    team.add_member(user, Membership.Role.MEMBER)
    return user


def test_connect_is_rate_limited_per_user_with_a_429_page(
    world: SandboxWorld, team: Team, alice: User, bob: User, settings: Settings
) -> None:
    settings.CONNECT_RATE_LIMIT_PER_USER = 2
    client = signed_in(bob)

    answers = [click_connect(client, team, world).status_code for _ in range(2)]
    refused = click_connect(client, team, world)

    assert answers == [302, 302]
    assert_too_many(refused, "You have started 2 connections to Bipsync in a short time")
    assert int(refused["Retry-After"]) <= 60
    assert PendingAuthorizationRecord.objects.filter(user=bob).count() == 2
    # Another member of the team is not held back by bob's clicks.
    assert click_connect(signed_in(alice), team, world).status_code == 302


def test_connect_is_rate_limited_per_team(
    world: SandboxWorld, team: Team, alice: User, bob: User, settings: Settings
) -> None:
    settings.CONNECT_RATE_LIMIT_PER_TEAM = 2

    assert click_connect(signed_in(alice), team, world).status_code == 302
    assert click_connect(signed_in(bob), team, world).status_code == 302
    refused = click_connect(signed_in(member(team, "carol")), team, world)

    assert_too_many(refused, "Your team has started 2 connections to Bipsync in a short time")
    assert PendingAuthorizationRecord.objects.count() == 2


def test_pending_authorizations_are_capped_per_user_until_one_expires(
    world: SandboxWorld, team: Team, bob: User, settings: Settings
) -> None:
    settings.CONNECT_PENDING_LIMIT_PER_USER = 2
    client = signed_in(bob)
    assert [click_connect(client, team, world).status_code for _ in range(2)] == [302, 302]

    refused = click_connect(client, team, world)

    assert_too_many(refused, "You have 2 connections to Bipsync started and not finished")
    assert PendingAuthorizationRecord.objects.count() == 2
    # The oldest expires: there is room again.
    oldest = PendingAuthorizationRecord.objects.order_by("created").first()
    assert oldest is not None
    oldest.expires_at = timezone.now() - timedelta(seconds=1)
    oldest.save(update_fields=["expires_at"])
    assert click_connect(client, team, world).status_code == 302


def test_pending_authorizations_are_capped_per_team(
    world: SandboxWorld, team: Team, alice: User, bob: User, settings: Settings
) -> None:
    settings.CONNECT_PENDING_LIMIT_PER_TEAM = 2
    assert click_connect(signed_in(alice), team, world).status_code == 302
    assert click_connect(signed_in(bob), team, world).status_code == 302

    refused = click_connect(signed_in(member(team, "carol")), team, world)

    assert_too_many(refused, "Your team has 2 connections to Bipsync started and not finished")
    assert PendingAuthorizationRecord.objects.count() == 2


def test_with_redis_down_connect_still_works_and_the_pending_cap_still_holds(
    world: SandboxWorld, team: Team, bob: User, settings: Settings
) -> None:
    # A real fault: the counters' Redis is a port nobody listens on.
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    settings.CONNECT_RATE_LIMIT_PER_USER = 1
    settings.CONNECT_PENDING_LIMIT_PER_USER = 2
    client = signed_in(bob)

    answers = [click_connect(client, team, world).status_code for _ in range(2)]
    refused = click_connect(client, team, world)

    assert answers == [302, 302]
    assert_too_many(refused, "started and not finished")
