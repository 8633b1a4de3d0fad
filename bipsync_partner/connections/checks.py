"""System checks for token encryption."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security)
def check_encryption_keys(
    *,
    app_configs: Sequence[AppConfig] | None,
    databases: Sequence[str] | None,
    **kwargs: Any,
) -> list[checks.CheckMessage]:
    # Malformed keys already stopped start-up (ConnectionsConfig.ready); an empty list is only
    # possible with DEBUG on, and then nothing can be connected.
    if not settings.TOKEN_ENCRYPTION_KEYS:
        return [
            checks.Warning(
                "TOKEN_ENCRYPTION_KEYS is empty, so no Bipsync connection can be stored.",
                hint="Add a key; see .env.example for how to make one.",
                id="connections.W001",
            )
        ]
    return []
