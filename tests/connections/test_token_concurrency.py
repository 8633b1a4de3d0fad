"""Acceptance: many threads and processes asking for one expired token cause one refresh."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection as db_connection
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.connections import tokens
from bipsync_partner.connections.models import Connection
from tests.connections.test_tokens import configure_partner, refreshes, user_connection
from tests.support.sandbox import Sandbox, SandboxWorld

REPO_ROOT = Path(__file__).resolve().parents[2]
THREADS = 20
PROCESSES = 4


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def worker_env(sandbox: Sandbox, world: SandboxWorld) -> dict[str, str]:
    """The partner settings of this test, for a separate process on the test database."""
    db = django_settings.DATABASES["default"]
    database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    if db.get("PASSWORD"):
        database_url = (
            f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        )
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bipsync_partner.settings",
        "DEBUG": "1",
        "DATABASE_URL": database_url,
        "TOKEN_ENCRYPTION_KEYS": ",".join(django_settings.TOKEN_ENCRYPTION_KEYS),
        "BIPSYNC_API_BASE_TEMPLATE": sandbox.api_template,
        "BIPSYNC_WEB_BASE_TEMPLATE": sandbox.web_template,
        "BIPSYNC_ALLOW_INSECURE_LOOPBACK": "1",
        "BIPSYNC_USER_CLIENT_ID": world.user_app.client_id,
        "BIPSYNC_USER_CLIENT_SECRET": world.user_app.client_secret or "",
        "BIPSYNC_SERVICE_CLIENT_ID": world.service_app.client_id,
        "BIPSYNC_SERVICE_CLIENT_SECRET": world.service_app.client_secret or "",
        "BIPSYNC_PUBLIC_CLIENT_ID": world.device_app.client_id,
    }


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_twenty_threads_and_four_processes_cause_exactly_one_refresh(
    settings: Settings, sandbox: Sandbox, sandbox_world: SandboxWorld, team: Team, alice: User
) -> None:
    configure_partner(settings, sandbox, sandbox_world)
    conn = user_connection(sandbox_world, team, alice, expired=True)
    old_digest = digest(conn.access_token or "")

    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.connections.token_worker", str(conn.pk)],
            cwd=REPO_ROOT,
            env=worker_env(sandbox, sandbox_world),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line == "ready\n", process.stderr.read() if process.stderr else line

        start = threading.Barrier(THREADS + 1)
        results: list[str] = []
        errors: list[BaseException] = []

        def ask() -> None:
            own = Connection.objects.get(pk=conn.pk)
            start.wait()
            try:
                results.append(digest(tokens.get_access_token(own)))
            except BaseException as exc:
                errors.append(exc)
            finally:
                db_connection.close()

        threads = [threading.Thread(target=ask) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        # Release the processes and the threads together.
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        start.wait()
        for thread in threads:
            thread.join(timeout=60)
        for process in processes:
            out, err = process.communicate(timeout=60)
            assert process.returncode == 0, err
            results.append(out.strip())
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    assert errors == []
    assert len(results) == THREADS + PROCESSES
    new_digest = digest(Connection.objects.get(pk=conn.pk).access_token or "")
    assert new_digest != old_digest
    assert set(results) == {new_digest}
    assert refreshes(sandbox, sandbox_world, outcome=None) == 1
    assert Connection.objects.get(pk=conn.pk).version == conn.version + 1
