"""Django's deployment checklist passes with the shipped production configuration: the
Kubernetes ConfigMap's values, secrets made on the spot, nothing else (DEBUG off, every other
setting at its default), and with warnings counted as failures."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import yaml

from bipsync_partner.connections.crypto import new_encryption_key

ROOT = Path(__file__).resolve().parents[2]


def production_env(**overrides: str) -> dict[str, str]:
    configmap = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "configmap.yaml").read_text())
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        **configmap["data"],
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": "postgres://bipsync:unused@db.internal:5432/bipsync_partner",
        "REDIS_URL": "redis://redis.internal:6379/0",
        "TOKEN_ENCRYPTION_KEYS": new_encryption_key(),
        **overrides,
    }


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_deployment_checklist_passes_with_production_settings() -> None:
    result = check_deploy(production_env())

    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_the_deployment_checklist_fails_when_hsts_leaves_out_subdomains() -> None:
    # The same run with one HSTS option switched off: the check above is not a formality.
    result = check_deploy(production_env(SECURE_HSTS_INCLUDE_SUBDOMAINS="0"))

    assert result.returncode != 0
    assert "security.W005" in result.stderr
