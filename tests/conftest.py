"""Shared fixtures: a few named people around one team, as every page test needs them.

- ``alice``: admin of ``team`` ("Acme Research")
- ``bob``: member of ``team``
- ``charlie``: an outsider, admin of ``other_team`` only
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings as django_settings
from django.test import Client, override_settings

from accounts.models import Membership, Team, User

PASSWORD = "correct horse battery staple"

pytest_plugins: list[str] = ["tests.support.sandbox"]


@pytest.fixture(autouse=True, scope="session")
def fast_password_hashing() -> Iterator[None]:
    """PBKDF2 costs ~0.3 s a user by design; tests create hundreds of users and test no hashing."""
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True, scope="session")
def _own_coordination_keys() -> Iterator[None]:
    """This session's Redis coordination keys apart from other sessions' on the same server: the
    fleet-wide count of refused grants (connections/incidents.py) must not add up other test
    runs' refusals. tests/sync narrows it further for its workers."""
    old = django_settings.COORDINATION_KEY_PREFIX
    django_settings.COORDINATION_KEY_PREFIX = f"test-{os.getpid()}-{uuid.uuid4().hex[:8]}:coord"
    yield
    django_settings.COORDINATION_KEY_PREFIX = old


@pytest.fixture
def team(db: None) -> Team:
    return Team.objects.create(name="Acme Research", slug="acme")


@pytest.fixture
def other_team(db: None) -> Team:
    return Team.objects.create(name="Globex", slug="globex")


@pytest.fixture
def alice(team: Team) -> User:
    user = User.objects.create_user("alice@example.com", PASSWORD, name="Alice Admin")
    team.add_member(user, Membership.Role.ADMIN)
    return user


@pytest.fixture
def bob(team: Team) -> User:
    user = User.objects.create_user("bob@example.com", PASSWORD, name="Bob Member")
    team.add_member(user, Membership.Role.MEMBER)
    return user


@pytest.fixture
def charlie(other_team: Team) -> User:
    user = User.objects.create_user("charlie@example.com", PASSWORD, name="Charlie Outsider")
    other_team.add_member(user, Membership.Role.ADMIN)
    return user


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client
