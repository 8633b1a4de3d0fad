from __future__ import annotations

import socket

import pytest
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper


def closed_port() -> int:
    """A loopback port nobody listens on: a real unreachable Redis, not a mock."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_it_answers_liveness_without_touching_anything(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_it_is_ready_when_database_redis_and_broker_answer(db: None, client: Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok", "broker": "ok"}


@pytest.mark.parametrize(
    ("setting", "check", "sentence"),
    [
        ("REDIS_URL", "redis", "Not ready: Redis (REDIS_URL) does not answer."),
        (
            "CELERY_BROKER_URL",
            "broker",
            "Not ready: the Celery broker (CELERY_BROKER_URL) does not answer.",
        ),
    ],
)
def test_it_is_not_ready_when_a_redis_is_down_and_says_which(
    db: None, client: Client, settings: SettingsWrapper, setting: str, check: str, sentence: str
) -> None:
    setattr(settings, setting, f"redis://127.0.0.1:{closed_port()}/0")
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"] == {
        "database": "ok",
        "redis": "ok",
        "broker": "ok",
        check: "unavailable",
    }
    assert body["detail"] == sentence


def test_it_tags_every_response_with_a_request_id(client: Client) -> None:
    response = client.get("/healthz")
    assert len(response["X-Request-ID"]) == 32
    echoed = client.get("/healthz", headers={"X-Request-ID": "proxy-id-1234"})
    assert echoed["X-Request-ID"] == "proxy-id-1234"
    forged = client.get("/healthz", headers={"X-Request-ID": "bad\nid injected"})
    assert forged["X-Request-ID"] != "bad\nid injected"
