"""The soak's machine room: its own PostgreSQL and Redis, the sandbox, web, workers and beat.

Nothing is shared with other work on the machine: the servers run on spare ports with their data
in a temporary folder (the sandbox has a PostgreSQL server of its own, as Bipsync has its own
servers: restarting the partner's database must not take Bipsync down with it), the product's processes are told only those addresses, and everything
listens on 127.0.0.1. :meth:`Stack.close` stops every process and deletes the data; it is safe to
call at any point of the set-up and more than once.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bipsync_partner.connections.crypto import new_encryption_key
from devtools import services
from devtools.soak.config import SoakConfig
from devtools.soak.processes import Managed, ProcessFailed, free_port, run_step

PY = sys.executable
BIN = Path(sys.executable).parent
USER_CLIENT_ID = "soak-partner-user-app"
SERVICE_CLIENT_ID = "soak-partner-service-app"
_ROTATION_FAULT_SQL = """
CREATE SEQUENCE IF NOT EXISTS soak_rotation_fault;
CREATE OR REPLACE FUNCTION soak_rotation_fault() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.version > OLD.version AND nextval('soak_rotation_fault') <= {count} THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS soak_rotation_fault ON connections_connection;
CREATE TRIGGER soak_rotation_fault BEFORE UPDATE ON connections_connection
    FOR EACH ROW EXECUTE FUNCTION soak_rotation_fault();
"""
# Inherited variables that would point a process somewhere else than the soak's own servers.
FOREIGN = (
    "DJANGO_SETTINGS_MODULE",
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_BROKER_KEY_PREFIX",
    "CACHE_KEY_PREFIX",
    "COORDINATION_KEY_PREFIX",
    "SANDBOX_DATABASE_URL",
    "METRICS_BEARER_TOKEN",
)


class Stack:
    def __init__(self, config: SoakConfig, logs: Path) -> None:
        self.config = config
        self.logs = logs
        self.data = Path(tempfile.mkdtemp(prefix="bipsync-soak-"))
        # mkdtemp makes it 0700; run as root, PostgreSQL runs as an unprivileged user whose
        # group is still root's, so the group needs to traverse it too (initdb: "could not
        # access directory"). What lies inside keeps its own, tighter modes.
        self.data.chmod(0o755)
        self.pg_port = free_port()
        self.sandbox_pg_port = free_port()
        self.redis_port = free_port()
        self.sandbox_port = free_port()
        self.web_port = free_port()
        self.admin_key = secrets.token_urlsafe(24)
        # The person whose page views the soak makes (created by the seed step).
        self.web_email = "visitor@soak.example"
        self.web_password = secrets.token_urlsafe(16)
        self.user_secret = secrets.token_urlsafe(32)
        self.service_secret = secrets.token_urlsafe(32)
        self.secret_key = secrets.token_urlsafe(48)
        self.sandbox_secret_key = secrets.token_urlsafe(40)
        self.encryption_key = new_encryption_key()
        self.processes: dict[str, Managed] = {}
        self.feed: Managed | None = None
        self._pg_started = False
        self.rotation_fault_budget = 0
        self._redis_started = False
        self._closed = False

    # -- addresses -------------------------------------------------------------------------------
    @property
    def server_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.pg_port}"

    @property
    def partner_database_url(self) -> str:
        return f"{self.server_url}/bipsync_partner"

    @property
    def sandbox_database_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.sandbox_pg_port}/bipsync_sandbox"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def description(self) -> dict[str, Any]:
        return {
            "logs": str(self.logs),
            "data": str(self.data),
            "ports": {
                "postgres": self.pg_port,
                "sandbox_postgres": self.sandbox_pg_port,
                "redis": self.redis_port,
                "sandbox": self.sandbox_port,
                "web": self.web_port,
            },
        }

    # -- environments ------------------------------------------------------------------------------
    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
        env.update(
            {
                "BIPSYNC_API_BASE_TEMPLATE": self.sandbox_url + "/t/{tenant}/api",
                "BIPSYNC_WEB_BASE_TEMPLATE": self.sandbox_url + "/t/{tenant}/web",
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def sandbox_env(self) -> dict[str, str]:
        env = self._base_env()
        env.update(
            {
                "SANDBOX_DATABASE_URL": self.sandbox_database_url,
                "SANDBOX_SECRET_KEY": self.sandbox_secret_key,
                "SANDBOX_ADMIN_KEY": self.admin_key,
                "SANDBOX_DEBUG": "0",
                "SANDBOX_PASSWORD_ITERATIONS": "1000",
            }
        )
        return env

    def partner_env(self) -> dict[str, str]:
        env = self._base_env()
        env.update(
            {
                # Production settings (DEBUG off) with the refresh timings scaled (soak.settings).
                "DJANGO_SETTINGS_MODULE": "devtools.soak.settings",
                "DEBUG": "0",
                "SECRET_KEY": self.secret_key,
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "SITE_URL": self.web_url,
                "SECURE_SSL_REDIRECT": "0",
                "SECURE_HSTS_SECONDS": "0",
                # The visitor speaks plain HTTP on the loopback (no TLS proxy in front).
                "SESSION_COOKIE_SECURE": "0",
                "CSRF_COOKIE_SECURE": "0",
                "DATABASE_URL": self.partner_database_url,
                "REDIS_URL": self.redis_url,
                "CELERY_BROKER_URL": self.redis_url,
                "TOKEN_ENCRYPTION_KEYS": self.encryption_key,
                "BIPSYNC_ALLOW_INSECURE_LOOPBACK": "1",
                "BIPSYNC_USER_CLIENT_ID": USER_CLIENT_ID,
                "BIPSYNC_USER_CLIENT_SECRET": self.user_secret,
                "BIPSYNC_SERVICE_CLIENT_ID": SERVICE_CLIENT_ID,
                "BIPSYNC_SERVICE_CLIENT_SECRET": self.service_secret,
                # Reconnect notices to admins land in the worker logs.
                "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
                "LOG_JSON": "1",
                "SOAK_STATIC_ROOT": str(self.data / "static"),
                # Attachments the soak's feed writes, read by the writes worker.
                "MEDIA_ROOT": str(self.data / "media"),
            }
        )
        env.update(self.config.timings.partner_env())
        return env

    # -- servers -------------------------------------------------------------------------------------
    def start_servers(self) -> None:
        self._pg_started = True
        services.start_embedded_postgres(self.pg_port, self.data / "postgres")
        services.start_embedded_postgres(self.sandbox_pg_port, self.data / "postgres-sandbox")
        self._redis_started = True
        services.start_embedded_redis(self.redis_port, self.data / "redis")
        for url in (self.partner_database_url, self.sandbox_database_url):
            services.ensure_database(url)

    def migrate_partner(self) -> None:
        run_step(
            "migrate-partner",
            [PY, "manage.py", "migrate", "--noinput", "-v", "0"],
            self.partner_env(),
            self.logs,
        )
        # The pages' stylesheet comes from the manifest (production storage), as deployed.
        run_step(
            "collectstatic",
            [PY, "manage.py", "collectstatic", "--noinput", "-v", "0"],
            self.partner_env(),
            self.logs,
        )

    def _add(self, name: str, argv: list[str], env: dict[str, str]) -> Managed:
        process = Managed(name, argv, env, self.logs)
        self.processes[name] = process
        process.start()
        return process

    def start_sandbox(self) -> None:
        self._add(
            "sandbox",
            [
                PY,
                "-m",
                "bipsync_sandbox",
                # serve migrates the sandbox's database first (while the partner's migrates).
                "serve",
                "--port",
                str(self.sandbox_port),
                "--workers",
                "2",
                "--threads",
                "8",
            ],
            self.sandbox_env(),
        )

    def start_product(self) -> None:
        env = self.partner_env()
        self._add(
            "web",
            [
                str(BIN / "gunicorn"),
                "bipsync_partner.wsgi",
                "--bind",
                f"127.0.0.1:{self.web_port}",
                "--workers",
                str(self.config.web),
                "--timeout",
                "30",
            ],
            env,
        )
        for index in range(1, self.config.workers + 1):
            self._add(f"worker-refresh-{index}", self._worker_argv(f"refresh{index}"), env)
        self._add("worker-sync", self._worker_argv("sync"), env)
        if self.config.writes:
            self._add("worker-writes", self._worker_argv("writes"), env)
        self._add(
            "beat",
            [
                str(BIN / "celery"),
                "-A",
                "bipsync_partner.celery",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(self.data / "celerybeat-schedule"),
            ],
            env,
        )

    def _worker_argv(self, name: str) -> list[str]:
        queues = {"sync": "sync,default", "writes": "writes"}.get(name, "refresh")
        concurrency = 2 if name in ("sync", "writes") else self.config.concurrency
        return [
            str(BIN / "celery"),
            "-A",
            "bipsync_partner.celery",
            "worker",
            "--queues",
            queues,
            "--concurrency",
            str(concurrency),
            "--hostname",
            f"{name}@soak",
            "--loglevel",
            "INFO",
        ]

    def wait_until_ready(self, seconds: float = 60) -> None:
        """The sandbox and the web app answer their health checks (web: readiness, which also
        checks the database, Redis and the broker)."""
        deadline = time.monotonic() + seconds
        targets = {"sandbox": f"{self.sandbox_url}/healthz"}
        if "web" in self.processes:
            targets["web"] = f"{self.web_url}/readyz"
        pending = dict(targets)
        while pending:
            for name, url in list(pending.items()):
                self.processes[name].check()
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url, timeout=2).status_code == 200:
                        del pending[name]
            if pending and time.monotonic() > deadline:
                raise ProcessFailed(f"{', '.join(pending)} did not become ready in {seconds:.0f} s")
            if pending:
                time.sleep(0.2)

    def supervise(self) -> list[dict[str, Any]]:
        """Do what the deployments' supervisors do (systemd ``Restart=on-failure``, Compose
        ``restart: unless-stopped``, Kubernetes' restart policy): start again a product process
        that exited by itself, and say so. The sandbox exiting ends the soak."""
        self.processes["sandbox"].check()
        restarted = []
        for name, process in self.processes.items():
            if name == "sandbox" or process.down_on_purpose or process.running:
                continue
            if process.process is None:
                continue
            restarted.append(
                {"process": name, "exit": process.process.returncode, "at": time.time()}
            )
            process.stop()
            process.start()
        return restarted

    # -- faults ------------------------------------------------------------------------------------------
    def kill_worker(self, name: str) -> None:
        self.processes[name].kill()

    def start_worker(self, name: str) -> None:
        self.processes[name].start()

    def restart_redis(self) -> float:
        """Kill Redis (SIGKILL: nothing saved, it has no persistence anyway) and start it again
        on the same port, empty. Returns how long it was away."""
        started = time.monotonic()
        self._kill_redis()
        services.start_embedded_redis(self.redis_port, self.data / "redis")
        return time.monotonic() - started

    def restart_postgres(self, down_for: float) -> float:
        """Stop the partner's PostgreSQL as a crash does (``immediate``: no checkpoint, every
        session cut), leave it down ``down_for`` seconds (a failover takes some), and start it
        again on the same port and data. Returns how long it was away. The sandbox's server is
        not touched."""
        started = time.monotonic()
        self._stop_postgres(self.data / "postgres", mode="immediate")
        deadline = time.monotonic() + 10
        while services.port_answers("127.0.0.1", self.pg_port) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(max(0.0, down_for - (time.monotonic() - started)))
        services.start_embedded_postgres(self.pg_port, self.data / "postgres")
        return time.monotonic() - started

    def fail_rotation_writes(self, count: int) -> None:
        """The next ``count`` writes of a rotated token pair (an UPDATE that raises the row's
        version) lose their database session before they commit: the trigger terminates its own
        backend, which is what the writer sees of a database crash or failover right after Bipsync
        rotated. A sequence counts the failures, because it is not rolled back with them."""
        self.rotation_fault_budget = count
        with psycopg.connect(self.partner_database_url, autocommit=True) as conn:
            conn.execute(_ROTATION_FAULT_SQL.replace("{count}", str(int(count))))

    def rotation_writes_failed(self) -> int:
        with psycopg.connect(self.partner_database_url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SELECT last_value, is_called FROM soak_rotation_fault").fetchone()
        return min(int(row[0]), self.rotation_fault_budget) if row and row[1] else 0

    def stop_failing_rotation_writes(self) -> None:
        with psycopg.connect(self.partner_database_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                "DROP TRIGGER IF EXISTS soak_rotation_fault ON connections_connection; "
                "DROP FUNCTION IF EXISTS soak_rotation_fault(); "
                "DROP SEQUENCE IF EXISTS soak_rotation_fault"
            )

    def _kill_redis(self) -> None:
        pidfile = self.data / "redis" / "redis.pid"
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while services.port_answers("127.0.0.1", self.redis_port) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()

    # -- partner-side steps ---------------------------------------------------------------------------
    def partner_step(self, name: str, *args: str, timeout: float = 600) -> str:
        # Only these steps get the sandbox's admin key; the product's processes never see it.
        env = {
            **self.partner_env(),
            "SOAK_SANDBOX_URL": self.sandbox_url,
            "SOAK_SANDBOX_ADMIN_KEY": self.admin_key,
            "SOAK_WEB_EMAIL": self.web_email,
            "SOAK_WEB_PASSWORD": self.web_password,
        }
        return run_step(
            name,
            [PY, "-m", "devtools.soak.partner", *args],
            env,
            self.logs,
            timeout=timeout,
        )

    def start_feed(self, plan_path: Path) -> None:
        """The writes feed: not a product process, so not supervised; it ends by itself."""
        env = {
            **self.partner_env(),
            "SOAK_SANDBOX_URL": self.sandbox_url,
            "SOAK_SANDBOX_ADMIN_KEY": self.admin_key,
        }
        self.feed = Managed(
            "writes-feed",
            [PY, "-m", "devtools.soak.partner_writes", "feed", str(plan_path)],
            env,
            self.logs,
        )
        self.feed.start()

    def writes_step(self, *args: str) -> str:
        env = {
            **self.partner_env(),
            "SOAK_SANDBOX_URL": self.sandbox_url,
            "SOAK_SANDBOX_ADMIN_KEY": self.admin_key,
        }
        return run_step(
            "writes-verify", [PY, "-m", "devtools.soak.partner_writes", *args], env, self.logs
        )

    # -- the end ----------------------------------------------------------------------------------------
    def stop_product(self) -> None:
        """Beat first (no new sweeps), then workers and web together: SIGTERM to all (Celery's
        warm shutdown finishes running tasks), then wait for each."""
        beat = self.processes.get("beat")
        if beat is not None:
            beat.stop()
        others = [p for n, p in self.processes.items() if n.startswith("worker") or n == "web"]
        for process in others:
            process.terminate()
        for process in others:
            process.stop()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.feed is not None:
            with contextlib.suppress(BaseException):
                self.feed.stop(grace=5)
        for process in reversed(list(self.processes.values())):
            with contextlib.suppress(Exception):
                process.terminate()
        for process in reversed(list(self.processes.values())):
            with contextlib.suppress(BaseException):
                process.stop(grace=10)
        if self._redis_started:
            with contextlib.suppress(Exception):
                self._kill_redis()
        if self._pg_started:
            for pgdata in (self.data / "postgres", self.data / "postgres-sandbox"):
                with contextlib.suppress(Exception):
                    self._stop_postgres(pgdata)
        shutil.rmtree(self.data, ignore_errors=True)

    def _stop_postgres(self, pgdata: Path, mode: str = "immediate") -> None:
        if not (pgdata / "postmaster.pid").exists():
            return
        user = "embedded_postgres" if os.geteuid() == 0 else None
        subprocess.run(
            [
                str(services._postgres_bin() / "pg_ctl"),
                "-D",
                str(pgdata),
                "-m",
                mode,
                "-w",
                "stop",
            ],
            check=False,
            capture_output=True,
            timeout=30,
            **({"user": user} if user else {}),  # type: ignore[call-overload]
        )
