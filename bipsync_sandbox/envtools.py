"""Environment helpers for the sandbox's settings.

The sandbox shares nothing with the partner app (it could be a separate repository tomorrow), so it
keeps its own tiny copy of these helpers instead of importing the partner's ``env`` module.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of 1/0, true/false, yes/no, on/off.")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def database_from_url(
    url: str, *, name: str, synchronous_commit: bool = True, server_side_binding: bool = False
) -> dict[str, Any]:
    """Turn ``postgres://user:pass@host:port/dbname?sslmode=...`` into a DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ImproperlyConfigured(f"{name} must be a postgres:// URL.")
    db_name = unquote(parts.path.lstrip("/"))
    if not db_name:
        raise ImproperlyConfigured(
            f"{name} must name a database, e.g. postgres://host/bipsync_sandbox."
        )
    options: dict[str, Any] = dict(parse_qsl(parts.query))
    if not synchronous_commit:
        # Commits stay atomic and visible at once; only a database crash could lose the last
        # few. An emulator can afford that, and the token endpoint stops waiting on fsync.
        options["options"] = (options.get("options", "") + " -c synchronous_commit=off").strip()
    if server_side_binding:
        # Parameters travel separately and psycopg prepares statements it sees repeatedly, so
        # Postgres parses and plans the token endpoint's few queries once per connection.
        options.setdefault("server_side_binding", True)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": db_name,
        "USER": unquote(parts.username or "postgres"),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or 5432),
        "OPTIONS": options,
        # Persistent connections: a token request must not pay for a new Postgres connection
        # (the sandbox aims at several hundred refreshes per second on two cores).
        "CONN_MAX_AGE": None,
        "CONN_HEALTH_CHECKS": True,
    }
