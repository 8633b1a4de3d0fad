"""Pages answer 503 with a sentence while PostgreSQL is unreachable (ops/middleware.py).

The fault is real: the test's database connection is pointed at a loopback port nobody listens
on, so every query of the request fails to connect, as during a restart of PostgreSQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from django.db import connection
from django.test import Client

from accounts.models import Team, User
from bipsync_partner.ops.middleware import DATABASE_DOWN_SENTENCE as SENTENCE
from tests.conftest import PASSWORD, signed_in
from tests.ops.test_health import closed_port

pytestmark = pytest.mark.django_db(transaction=True)


@contextlib.contextmanager
def port_restored() -> Iterator[None]:
    port = connection.settings_dict["PORT"]
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port


@contextlib.contextmanager
def database_down() -> Iterator[None]:
    with port_restored():
        connection.close()
        connection.settings_dict["PORT"] = str(closed_port())
        yield


def test_a_page_answers_503_with_a_sentence_while_the_database_is_down(
    team: Team, alice: User
) -> None:
    client = signed_in(alice)
    page = f"/teams/{team.slug}/connections/"
    assert client.get(page).status_code == 200

    with database_down():
        response = client.get(page)

    assert response.status_code == 503
    assert SENTENCE in response.content.decode()
    assert response["Retry-After"] == "30"
    assert client.get(page).status_code == 200  # back as soon as the database is


def test_signing_in_answers_503_with_a_sentence_while_the_database_is_down(alice: User) -> None:
    with database_down():
        response = Client().post(
            "/accounts/login/", {"username": alice.email, "password": PASSWORD}
        )

    assert response.status_code == 503
    assert SENTENCE in response.content.decode()


@pytest.mark.urls("tests.ops.failing_urls")
@pytest.mark.parametrize("visitor", ["signed in", "new session"])
def test_a_session_the_database_cannot_save_answers_503_with_a_sentence(
    visitor: str, alice: User
) -> None:
    # The session is saved after the view, in the response phase: a member's is updated, a new
    # visitor's created, and each fails differently inside Django when PostgreSQL is gone.
    client = signed_in(alice) if visitor == "signed in" else Client()
    with port_restored():
        response = client.get("/session-into-an-outage/", {"port": closed_port()})

    assert response.status_code == 503
    assert SENTENCE in response.content.decode()
    assert response["Retry-After"] == "30"
