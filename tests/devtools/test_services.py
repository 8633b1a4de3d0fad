from __future__ import annotations

import os
import subprocess

import psycopg
from django.db import connection

from devtools import services


def server_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/postgres"


def exists(name: str) -> bool:
    with psycopg.connect(server_url(), autocommit=True) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            is not None
        )


def test_it_drops_the_databases_of_killed_test_runs_only(db: None) -> None:
    gone_pid = subprocess.Popen(["true"])
    gone_pid.wait()  # a pid whose process has exited
    prefix = "test_bipsync_stale_check_"
    dead, alive = f"{prefix}{gone_pid.pid}", f"{prefix}{os.getpid()}"
    for name in (dead, alive):
        services.ensure_database(f"{server_url().rpartition('/')[0]}/{name}")
    try:
        dropped = services.drop_stale_test_databases(server_url(), prefix)
        assert dropped == [dead]
        assert not exists(dead)
        assert exists(alive)
    finally:
        with psycopg.connect(server_url(), autocommit=True) as conn:
            for name in (dead, alive):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
