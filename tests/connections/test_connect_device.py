"""``manage.py connect_device`` run as a real process against the sandbox; the test plays the person
who enters the code at Bipsync (sandbox.approve_device over real HTTP)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connection as db_connection

from accounts.models import Team, User
from bipsync_partner.connections.models import Connection, ConnectionEvent
from tests.connections.connect_support import new_world
from tests.support.sandbox import Sandbox, SandboxWorld

pytestmark = pytest.mark.django_db(transaction=True)

REPO = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    db = db_connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def world(sandbox: Sandbox) -> Iterator[SandboxWorld]:
    created = new_world(sandbox)
    # Poll every second instead of RFC 8628's default 5 s; the sandbox accepts it for this app.
    sandbox.set_lifetimes(device_interval=1, client_id=created.device_app.client_id)
    yield created
    sandbox.reset_lifetimes(created.device_app.client_id)


class DeviceCommand:
    """The command as a child process (its own Django, the test database, the sandbox)."""

    def __init__(
        self,
        sandbox: Sandbox,
        world: SandboxWorld,
        email: str = "bob@example.com",
        extra: list[str] | None = None,
    ):
        env = {
            **os.environ,
            "DEBUG": "1",
            "DATABASE_URL": _database_url(),
            "TOKEN_ENCRYPTION_KEYS": ",".join(django_settings.TOKEN_ENCRYPTION_KEYS),
            "BIPSYNC_API_BASE_TEMPLATE": sandbox.api_template,
            "BIPSYNC_WEB_BASE_TEMPLATE": sandbox.web_template,
            "BIPSYNC_ALLOW_INSECURE_LOOPBACK": "1",
            "BIPSYNC_PUBLIC_CLIENT_ID": world.device_app.client_id,
            "BIPSYNC_DEVICE_POLL_INTERVAL_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("DJANGO_SETTINGS_MODULE", None)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "connect_device",
                "--email",
                email,
                "--team",
                "acme",
                "--tenant",
                world.tenant,
                *(extra or []),
            ],
            cwd=REPO,
            env=env,
            # A terminal delivers Ctrl-C to a process with default SIGINT handling; a test run
            # started in the background (as CI may be) ignores SIGINT, and children inherit that.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.head: list[str] = []

    def user_code(self) -> str:
        """Read the instructions up to "Press Ctrl-C" and return the code they show."""
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise AssertionError(f"The command ended early: {self.finish()}")
            self.head.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        match = re.search(r"enter\s+(\S+)", "".join(self.head))
        assert match, self.head
        return match.group(1)

    def finish(self) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=90)
        return self.process.returncode, "".join(self.head) + out, err


@pytest.fixture
def members(team: Team, alice: User, bob: User) -> Team:
    return team


def test_the_device_command_connects_a_member_once_they_approve(
    sandbox: Sandbox, world: SandboxWorld, members: Team, bob: User
) -> None:
    command = DeviceCommand(sandbox, world)
    code = command.user_code()
    sandbox.approve_device(world.tenant, code, world.member.email, world.member.password)
    status, out, err = command.finish()

    assert status == 0, err
    assert f"open   {world.web_base}/oauth/device" in out
    assert f"or open {world.web_base}/oauth/device?user_code={code}" in out
    assert re.search(r"Waiting for approval:\s+\d+ s left", out)
    assert "Connected: acme / bob@example.com" in out
    connection = Connection.objects.get()
    assert connection.kind == Connection.Kind.DEVICE
    assert connection.user == bob
    assert connection.status == Connection.Status.ACTIVE
    assert connection.subject_id == world.member.id
    assert connection.refresh_token is not None
    assert connection.access_token is not None
    assert connection.access_token not in out
    assert ConnectionEvent.objects.get().kind == ConnectionEvent.Kind.CONNECTED


def test_running_the_device_command_again_reconnects_the_same_connection(
    sandbox: Sandbox, world: SandboxWorld, members: Team, bob: User
) -> None:
    for _ in range(2):
        command = DeviceCommand(sandbox, world)
        sandbox.approve_device(
            world.tenant, command.user_code(), world.member.email, world.member.password
        )
        assert command.finish()[0] == 0

    connection = Connection.objects.get()
    assert [e.kind for e in connection.events.order_by("created")] == [
        ConnectionEvent.Kind.CONNECTED,
        ConnectionEvent.Kind.RECONNECTED,
        ConnectionEvent.Kind.REVOKED,  # the replaced grant, as the public client
    ]


def test_the_device_command_says_so_when_the_request_is_denied(
    sandbox: Sandbox, world: SandboxWorld, members: Team
) -> None:
    command = DeviceCommand(sandbox, world)
    sandbox.approve_device(
        world.tenant, command.user_code(), world.member.email, world.member.password, approve=False
    )
    status, _, err = command.finish()

    assert status == 1
    assert "The request was denied at Bipsync; nothing was stored." in err
    assert "Traceback" not in err
    assert not Connection.objects.exists()


def test_the_device_command_says_so_when_the_code_expires(
    sandbox: Sandbox, world: SandboxWorld, members: Team
) -> None:
    sandbox.set_lifetimes(device=2, device_interval=1, client_id=world.device_app.client_id)
    command = DeviceCommand(sandbox, world)
    command.user_code()
    status, _, err = command.finish()

    assert status == 1
    assert "The code expired before it was approved" in err
    assert not Connection.objects.exists()


def test_ctrl_c_cancels_the_device_command_cleanly(
    sandbox: Sandbox, world: SandboxWorld, members: Team
) -> None:
    command = DeviceCommand(sandbox, world)
    command.user_code()
    command.process.send_signal(signal.SIGINT)
    status, _, err = command.finish()

    assert status == 1
    assert "Cancelled; nothing was stored." in err
    assert "Traceback" not in err
    assert not Connection.objects.exists()


def test_the_device_command_refuses_someone_outside_the_team(
    sandbox: Sandbox, world: SandboxWorld, members: Team, charlie: User
) -> None:
    # Refused before any HTTP call, so in process (no need for a child's start-up time).
    with pytest.raises(
        CommandError, match=re.escape("charlie@example.com is not a member of acme")
    ):
        call_command(
            "connect_device", "--email", "charlie@example.com", "--team", "acme", "--tenant", "x"
        )
    assert sandbox.counters(world.device_app.client_id).get(world.device_app.client_id) in (
        None,
        {},
    )


def _connect_as_member(sandbox: Sandbox, world: SandboxWorld) -> Connection:
    command = DeviceCommand(sandbox, world)
    sandbox.approve_device(
        world.tenant, command.user_code(), world.member.email, world.member.password
    )
    assert command.finish()[0] == 0
    return Connection.objects.get()


def test_a_reconnect_approved_as_another_account_is_refused_without_consent(
    sandbox: Sandbox, world: SandboxWorld, members: Team
) -> None:
    before = _connect_as_member(sandbox, world)

    command = DeviceCommand(sandbox, world)  # stdin is a pipe: nobody at a terminal to ask
    sandbox.approve_device(
        world.tenant, command.user_code(), world.admin.email, world.admin.password
    )
    status, _, err = command.finish()

    assert status == 1
    assert "Nothing was changed: the code was approved as another Bipsync account" in err
    after = Connection.objects.get()
    assert after.subject_id == world.member.id
    assert after.refresh_token == before.refresh_token
    assert after.events.count() == 1  # connected; no reconnect recorded
    # The grant approved as the other account was given back at once (RFC 7009).
    client_id = world.device_app.client_id
    revocations = sandbox.counters(client_id).get(client_id, {}).get("revocation", {})
    assert sum(sum(outcomes.values()) for outcomes in revocations.values()) >= 1, revocations


def test_a_reconnect_as_another_account_goes_through_with_replace_account(
    sandbox: Sandbox, world: SandboxWorld, members: Team
) -> None:
    _connect_as_member(sandbox, world)

    command = DeviceCommand(sandbox, world, extra=["--replace-account"])
    sandbox.approve_device(
        world.tenant, command.user_code(), world.admin.email, world.admin.password
    )
    status, out, err = command.finish()

    assert status == 0, err
    assert "Reconnected" in out
    connection = Connection.objects.get()
    assert connection.subject_id == world.admin.id
    assert (
        "Before, it acted as"
        in connection.events.get(kind=ConnectionEvent.Kind.RECONNECTED).message
    )
