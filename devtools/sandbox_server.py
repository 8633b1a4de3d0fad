"""Start a sandbox server of its own for a test session or a benchmark: a fresh database, a free
port, a random admin key, gunicorn as ``python -m bipsync_sandbox serve`` runs it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
from psycopg import sql

from bipsync_sandbox.client import SandboxClient
from devtools.processes import die_with_parent
from devtools.services import ROOT, process_alive

DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432"
CALLBACK_PATH = "/connections/callback/"


class Sandbox(SandboxClient):
    """A sandbox server this process started, and a client of it."""

    def __init__(
        self,
        base_url: str,
        admin_key: str,
        *,
        process: subprocess.Popen[bytes] | None = None,
        database_url: str = "",
        env: dict[str, str] | None = None,
        partner_url: str,
    ) -> None:
        super().__init__(base_url, admin_key)
        # Where the partner app would be: redirect URIs of the sandbox's applications point here.
        self.partner_url = partner_url.rstrip("/")
        self.redirect_uri = self.partner_url + CALLBACK_PATH
        self.database_url = database_url
        # The environment the server runs with, for running sandbox commands against it.
        self.env = dict(env or {})
        self.process = process


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def reserved_port() -> Iterator[int]:
    """A port bound for as long as the block runs and never listened on: no other process can
    take it, and a connection to it is refused at once (nothing answers for the partner)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        yield port


def _server_url() -> str:
    raw = os.environ.get("DATABASE_URL", "")
    if not raw:
        return DEFAULT_SERVER_URL
    parts = urlsplit(raw)
    return f"{parts.scheme}://{parts.netloc}"


def _recreate_database(server_url: str, name: str) -> None:
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        # Sessions run concurrently on a shared machine, so every session has its own database;
        # databases of sessions that died without cleaning up are dropped here.
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'test_bipsync_sandbox_%%'"
        ).fetchall()
        for (stale,) in rows:
            suffix = stale.rsplit("_", 1)[-1]
            if suffix.isdigit() and not process_alive(int(suffix)):
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(stale))
                )
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def start_sandbox(*, workers: int = 2, threads: int = 4) -> Iterator[Sandbox]:
    """A sandbox on a free port with a fresh database of its own, and a reserved, silent partner
    address for its redirect URIs (so a redirect reaches nothing, even while ``bin/run`` serves
    the development stack on 127.0.0.1:8000 on the same machine)."""
    with reserved_port() as partner_port:
        yield from _run_sandbox(f"http://127.0.0.1:{partner_port}", workers, threads)


def _run_sandbox(partner_url: str, workers: int, threads: int) -> Iterator[Sandbox]:
    server_url = _server_url()
    db_name = f"test_bipsync_sandbox_{os.getpid()}"
    _recreate_database(server_url, db_name)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    admin_key = secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "SANDBOX_DATABASE_URL": f"{server_url}/{db_name}",
        "SANDBOX_SECRET_KEY": secrets.token_urlsafe(40),
        "SANDBOX_ADMIN_KEY": admin_key,
        "SANDBOX_DEBUG": "0",
        "SANDBOX_PASSWORD_ITERATIONS": "1000",
        "BIPSYNC_API_BASE_TEMPLATE": base_url + "/t/{tenant}/api",
        "BIPSYNC_WEB_BASE_TEMPLATE": base_url + "/t/{tenant}/web",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log_path = Path(
        os.environ.get("SANDBOX_TEST_LOG")
        or Path(tempfile.gettempdir()) / f"bipsync-sandbox-test-{os.getpid()}.log"
    )
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bipsync_sandbox",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--threads",
            str(threads),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    sandbox = Sandbox(
        base_url,
        admin_key,
        process=process,
        database_url=env["SANDBOX_DATABASE_URL"],
        env=env,
        partner_url=partner_url,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"The sandbox exited with {process.returncode}: {log_path.read_text()[-3000:]}"
                )
            try:
                if httpx.get(base_url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"The sandbox did not start: {log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield sandbox
    finally:
        sandbox.close()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        log.close()
        _drop_database(server_url, db_name)
