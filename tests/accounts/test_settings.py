"""Settings are read in a fresh interpreter: they run once at import, so that is how to test them."""

from __future__ import annotations

import os
import subprocess
import sys


def import_settings(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", "import bipsync_partner.settings"],
        env=clean,
        capture_output=True,
        text=True,
        check=False,
    )


def test_it_refuses_to_start_in_production_without_a_secret_key() -> None:
    result = import_settings(DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_it_refuses_a_short_secret_key_in_production() -> None:
    result = import_settings(DEBUG="0", SECRET_KEY="short")
    assert "SECRET_KEY must be set" in result.stderr


def test_it_starts_in_production_with_everything_configured() -> None:
    result = import_settings(DEBUG="0", SECRET_KEY="x" * 50)
    assert result.returncode == 0, result.stderr


def test_it_refuses_a_nonsense_boolean() -> None:
    result = import_settings(DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG must be one of" in result.stderr
