"""The token service under real faults: PostgreSQL triggers that fail the history insert or the
commit, unusable answers from the sandbox, short token lifetimes, a tenant's Retry-After and many
threads of one process asking at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Literal

import pytest
from django.core import mail
from django.db import connection as db_connection
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.connections import sweep, tokens
from bipsync_partner.connections.models import Connection, ConnectionEvent
from bipsync_partner.coordination import TenantGate
from tests.connections.test_tokens import (
    api_accepts,
    configure_partner,
    machine_connection,
    refreshes,
    user_connection,
)
from tests.support.sandbox import Sandbox, SandboxWorld

pytestmark = pytest.mark.django_db(transaction=True)

Fault = Literal["history_insert", "rotation_commit"]
FailWrites = Callable[[Fault, int], Callable[[], int]]


@pytest.fixture
def partner(settings: Settings, sandbox: Sandbox, sandbox_world: SandboxWorld) -> Settings:
    configure_partner(settings, sandbox, sandbox_world)
    return settings


@pytest.fixture
def fail_writes(transactional_db: None) -> Iterator[FailWrites]:
    """Install a PostgreSQL trigger that fails the next ``times`` history inserts, or commits
    of a token change (a deferred constraint trigger raising a serialization failure, SQLSTATE
    40001, at COMMIT). A sequence counts the failures: it survives the rollbacks it causes.
    Returns a function that says how many times the trigger fired."""
    installed: list[str] = []
    connections = Connection._meta.db_table
    events = ConnectionEvent._meta.db_table

    def install(fault: Fault, times: int) -> Callable[[], int]:
        name = f"tokensvc_fail_{fault}"
        code = "40001" if fault == "rotation_commit" else "P0001"
        with db_connection.cursor() as cursor:
            cursor.execute(f"CREATE SEQUENCE {name}_count")
            cursor.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF nextval('{name}_count') <= {times} THEN "
                f"RAISE EXCEPTION 'injected {fault} fault' USING ERRCODE = '{code}'; END IF; "
                "RETURN NEW; END $$"
            )
            if fault == "history_insert":
                cursor.execute(
                    f"CREATE TRIGGER {name} BEFORE INSERT ON {events} "
                    f"FOR EACH ROW EXECUTE FUNCTION {name}()"
                )
            else:
                cursor.execute(
                    f"CREATE CONSTRAINT TRIGGER {name} AFTER UPDATE ON {connections} "
                    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                    f"WHEN (OLD.version IS DISTINCT FROM NEW.version) EXECUTE FUNCTION {name}()"
                )
        installed.append(name)

        def fired() -> int:
            with db_connection.cursor() as cursor:
                cursor.execute(f"SELECT last_value, is_called FROM {name}_count")
                last, called = cursor.fetchone()
            return min(int(last), times) if called else 0

        return fired

    yield install
    with db_connection.cursor() as cursor:
        for name in installed:
            table = events if name.endswith("history_insert") else connections
            cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            cursor.execute(f"DROP FUNCTION IF EXISTS {name}()")
            cursor.execute(f"DROP SEQUENCE IF EXISTS {name}_count")


def live_at_bipsync(sandbox: Sandbox, token: str | None) -> bool:
    return token is not None and bool(sandbox.introspect(token)["active"])


# --- no rotated token lost ------------------------------------------------------------------


def test_a_rotation_is_kept_when_its_history_line_cannot_be_written(
    partner: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
    fail_writes: FailWrites,
) -> None:
    conn = user_connection(sandbox_world, team, alice, expired=True)
    fired = fail_writes("history_insert", 1)

    fresh = tokens.get_access_token(conn)

    assert fired() == 1
    stored = Connection.objects.get(pk=conn.pk)
    assert stored.access_token == fresh
    assert api_accepts(sandbox_world, fresh)
    assert live_at_bipsync(sandbox, stored.refresh_token)
    assert stored.status == Connection.Status.ACTIVE
    assert not stored.events.filter(kind=ConnectionEvent.Kind.REFRESHED).exists()


def test_a_rotation_whose_commit_fails_once_is_stored_by_the_next_attempt(
    partner: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
    fail_writes: FailWrites,
) -> None:
    conn = user_connection(sandbox_world, team, alice, expired=True)
    fired = fail_writes("rotation_commit", 1)

    result = tokens.refresh_connection(conn.pk)

    assert fired() == 1
    assert result.outcome == "refreshed"
    stored = Connection.objects.get(pk=conn.pk)
    assert stored.status == Connection.Status.ACTIVE
    assert stored.version == conn.version + 1
    assert live_at_bipsync(sandbox, stored.refresh_token)
    assert api_accepts(sandbox_world, stored.access_token or "")
    assert refreshes(sandbox, sandbox_world) == 1
    assert stored.events.filter(kind=ConnectionEvent.Kind.REFRESHED).count() == 1


def test_a_rotation_that_cannot_be_stored_tells_the_admins_exactly_that(
    partner: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
    fail_writes: FailWrites,
) -> None:
    conn = user_connection(sandbox_world, team, alice, expired=True)
    attempts = 1 + len(tokens.STORE_RETRY_DELAYS)
    fired = fail_writes("rotation_commit", attempts)
    mail.outbox.clear()

    with pytest.raises(tokens.ReconnectRequired) as info:
        tokens.get_access_token(conn)

    assert fired() == attempts
    assert str(info.value) == tokens.NOT_STORED_SENTENCE
    assert "database could not store" in tokens.NOT_STORED_SENTENCE
    stored = Connection.objects.get(pk=conn.pk)
    assert stored.status == Connection.Status.NEEDS_RECONNECT
    assert stored.last_error_message == tokens.NOT_STORED_SENTENCE
    (email,) = mail.outbox
    assert email.to == [alice.email]
    assert tokens.NOT_STORED_SENTENCE in email.body
    assert "revoked or expired" not in email.body


def test_an_unusable_answer_that_rotated_keeps_the_new_refresh_token_and_refreshes_again(
    partner: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
) -> None:
    conn = user_connection(sandbox_world, team, alice, expired=True)
    sandbox.set_fault(
        "alter_response",
        count=1,
        client_id=sandbox_world.user_app.client_id,
        grant_type="refresh_token",
        alter={"token_type": "mac"},
    )

    fresh = tokens.get_access_token(conn)

    assert api_accepts(sandbox_world, fresh)
    assert refreshes(sandbox, sandbox_world) == 2  # the unusable answer, then the good one
    stored = Connection.objects.get(pk=conn.pk)
    assert stored.status == Connection.Status.ACTIVE
    assert live_at_bipsync(sandbox, stored.refresh_token)


def test_unusable_answers_in_a_row_keep_the_last_refresh_token_and_back_off(
    partner: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
) -> None:
    conn = user_connection(sandbox_world, team, alice, expired=True)
    sandbox.set_fault(
        "alter_response",
        count=tokens.UNUSABLE_ANSWER_ATTEMPTS,
        client_id=sandbox_world.user_app.client_id,
        grant_type="refresh_token",
        alter={"access_token": None},
    )

    with pytest.raises(tokens.TokenTemporarilyUnavailable):
        tokens.get_access_token(conn)

    stored = Connection.objects.get(pk=conn.pk)
    assert stored.status == Connection.Status.FAILING
    assert stored.last_error_code == "invalid_response"
    assert live_at_bipsync(sandbox, stored.refresh_token)
    # Once the back-off has passed, the kept refresh token works: nothing was lost.
    Connection.objects.filter(pk=conn.pk).update(next_retry_at=timezone.now())
    assert api_accepts(sandbox_world, tokens.get_access_token(conn))
    assert Connection.objects.get(pk=conn.pk).status == Connection.Status.ACTIVE


def test_a_token_shorter_lived_than_the_leeway_is_refreshed_once_not_on_every_call(
    partner: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
) -> None:
    partner.BIPSYNC_TOKEN_LEEWAY_SECONDS = 60
    sandbox.set_lifetimes(access=60, client_id=sandbox_world.user_app.client_id)
    conn = user_connection(sandbox_world, team, alice, expired=True)

    handed_out = {tokens.get_access_token(conn) for _ in range(5)}

    assert len(handed_out) == 1
    assert refreshes(sandbox, sandbox_world) == 1
    # The sweep's query and the sweep's refresh agree: not due yet, with their 10-minute window.
    assert not sweep.due_connections(timezone.now()).filter(pk=conn.pk).exists()
    assert tokens.refresh_connection(conn.pk).outcome == "not_due"
    # Within the last half of its life it is due again.
    later = timezone.now() + timedelta(seconds=35)
    assert sweep.due_connections(later).filter(pk=conn.pk).exists()


def test_a_refresh_token_in_a_client_credentials_answer_is_ignored(
    partner: Settings, sandbox: Sandbox, sandbox_world: SandboxWorld, team: Team
) -> None:
    conn = machine_connection(sandbox_world, team)
    sandbox.set_fault(
        "alter_response",
        count=1,
        client_id=sandbox_world.team_app.client_id,
        grant_type="client_credentials",
        alter={"refresh_token": "rt-a-machine-must-not-keep"},
    )

    assert api_accepts(sandbox_world, tokens.get_access_token(conn))

    stored = Connection.objects.get(pk=conn.pk)
    assert stored.refresh_token is None
    assert stored.refresh_expires_at is None
    assert sandbox.token_requests(sandbox_world.team_app.client_id, "client_credentials") == 1


# --- also -----------------------------------------------------------------------------------


def test_an_inline_refresh_does_not_call_bipsync_while_the_tenant_asked_to_wait(
    partner: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
) -> None:
    conn = user_connection(sandbox_world, team, alice, expired=True)
    TenantGate(sandbox_world.tenant).defer(30)

    with pytest.raises(tokens.TokenTemporarilyUnavailable) as info:
        tokens.get_access_token(conn)

    assert info.value.code == tokens.RATE_LIMITED
    assert info.value.retry_at is not None
    assert info.value.retry_at > timezone.now() + timedelta(seconds=25)
    assert refreshes(sandbox, sandbox_world, outcome=None) == 0
    # Nothing happened to the connection itself: nothing is recorded against it.
    stored = Connection.objects.get(pk=conn.pk)
    assert (stored.status, stored.consecutive_failures) == (Connection.Status.ACTIVE, 0)


def test_an_inline_429_holds_back_every_refresh_of_the_tenant_for_retry_after(
    partner: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
    bob: User,
) -> None:
    first = user_connection(sandbox_world, team, alice, expired=True)
    second = user_connection(sandbox_world, team, bob, expired=True)
    sandbox.set_fault(
        "rate_limit", client_id=sandbox_world.user_app.client_id, delay_ms=120_000, count=1
    )

    with pytest.raises(tokens.TokenTemporarilyUnavailable):
        tokens.get_access_token(first)
    assert TenantGate(sandbox_world.tenant).remaining() >= 115

    # Another connection of the tenant, inline or through the sweep, waits without a request.
    with pytest.raises(tokens.TokenTemporarilyUnavailable) as info:
        tokens.get_access_token(second)
    assert info.value.code == tokens.RATE_LIMITED
    assert sweep.refresh_batch(sandbox_world.tenant, [(str(second.pk), second.version)]).waited
    assert refreshes(sandbox, sandbox_world, outcome=None) == 1


def test_threads_of_one_process_share_one_refresh_instead_of_queuing_on_the_row_lock(
    partner: Settings,
    sandbox: Sandbox,
    sandbox_world: SandboxWorld,
    team: Team,
    alice: User,
) -> None:
    conn = user_connection(sandbox_world, team, alice, expired=True)
    sandbox.set_fault("slow", delay_ms=1500, count=1, client_id=sandbox_world.user_app.client_id)
    threads = 8
    start = threading.Barrier(threads + 1)
    results: list[str] = []
    errors: list[BaseException] = []

    def ask() -> None:
        own = Connection.objects.get(pk=conn.pk)
        start.wait()
        try:
            results.append(tokens.get_access_token(own))
        except BaseException as exc:
            errors.append(exc)
        finally:
            db_connection.close()

    workers = [threading.Thread(target=ask) for _ in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    time.sleep(0.8)  # the one refresh is waiting for the slowed answer
    with db_connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        (queued,) = cursor.fetchone()
    for worker in workers:
        worker.join(timeout=60)

    assert queued == 0
    assert errors == []
    assert len(results) == threads
    assert len(set(results)) == 1
    assert refreshes(sandbox, sandbox_world, outcome=None) == 1
