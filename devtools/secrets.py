"""Development secrets: made once per checkout, kept in var/dev.env (git-ignored).

Keeping them stable across restarts matters: tokens encrypted under one run's key must still
decrypt after a restart, and the sandbox's client secrets must keep matching the partner's.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from bipsync_partner.connections.crypto import new_encryption_key

DEV_SECRETS: dict[str, Callable[[], str]] = {
    "SECRET_KEY": lambda: secrets.token_urlsafe(48),
    "TOKEN_ENCRYPTION_KEYS": new_encryption_key,
    "SANDBOX_SECRET_KEY": lambda: secrets.token_urlsafe(48),
    "SANDBOX_ADMIN_KEY": lambda: secrets.token_urlsafe(24),
    "BIPSYNC_USER_CLIENT_SECRET": lambda: secrets.token_urlsafe(32),
    "BIPSYNC_SERVICE_CLIENT_SECRET": lambda: secrets.token_urlsafe(32),
    "DEMO_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(9),
    "DEMO_MEMBER_PASSWORD": lambda: secrets.token_urlsafe(9),
    "DEMO_OUTSIDER_PASSWORD": lambda: secrets.token_urlsafe(9),
}


def load_or_create(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                values[key.strip()] = value.strip()
    missing = {k: make() for k, make in DEV_SECRETS.items() if k not in values}
    if missing:
        values.update(missing)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "# Development secrets made by bin/run; never use them in production.\n"
            + "".join(f"{k}={v}\n" for k, v in values.items())
        )
        path.chmod(0o600)
    return values
