"""Fixtures for connection tests: keys, and connections of each kind for the named users."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.connections.crypto import new_encryption_key
from bipsync_partner.connections.models import Connection
from tests.support.sandbox import Sandbox

MakeConnection = Callable[..., Connection]


@pytest.fixture
def make_connection(team: Team, alice: User) -> MakeConnection:
    """Save a user connection of alice's in "acme" unless told otherwise."""

    def make(**fields: Any) -> Connection:
        defaults: dict[str, Any] = {
            "team": team,
            "user": alice,
            "created_by": alice,
            "tenant": "acme",
            "kind": Connection.Kind.USER,
            "subject_id": "5f0c9a1b2c3d4e5f60718293",
            "subject_name": "Alice at Acme",
            "scopes": "rest_api:read rest_api:fields:read",
            "access_token": "at-" + new_encryption_key(),
            "refresh_token": "rt-" + new_encryption_key(),
            "access_expires_at": timezone.now() + timedelta(hours=1),
        }
        defaults.update(fields)
        return Connection.objects.create(**defaults)

    return make


def key_pair() -> tuple[str, str]:
    """Two fresh TOKEN_ENCRYPTION_KEYS entries (old, new)."""
    return new_encryption_key(), new_encryption_key()


@pytest.fixture(params=["token_response", "graphql_me"])
def identity_source(
    request: pytest.FixtureRequest, settings: Settings, sandbox: Sandbox
) -> Iterator[str]:
    """Whom a token acts as, learned from the token response's parameters (which only the
    sandbox sends), or from GraphQL's ``me`` with those parameters switched off at the sandbox:
    the subject-change checks must hold either way (BIPSYNC_IDENTITY_SOURCE)."""
    source: str = request.param
    settings.BIPSYNC_IDENTITY_SOURCE = source
    if source == "graphql_me":
        sandbox.set_token_subject_parameters(False)
    try:
        yield source
    finally:
        sandbox.set_token_subject_parameters(None)
