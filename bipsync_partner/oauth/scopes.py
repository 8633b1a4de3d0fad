"""Scope values (RFC 6749 §3.3) and Bipsync's team scope.

A scope is a space-separated list of tokens, each ``1*NQCHAR`` (``%x21 / %x23-5B / %x5D-7E``).
Bipsync's team scope is ``team_{id}`` with the team's 24-hex id (Bipsync reference, "Scopes").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from bipsync_partner.oauth.errors import ConfigurationError

_SCOPE_TOKEN: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_TEAM_ID: Final = re.compile(r"[0-9a-fA-F]{24}")


def is_scope_token(value: object) -> bool:
    return isinstance(value, str) and _SCOPE_TOKEN.fullmatch(value) is not None


def normalize_scopes(scopes: Iterable[str] | str) -> tuple[str, ...]:
    """Validate scope tokens and drop repeats, keeping the first-seen order.

    A single string is split on spaces (``"rest_api:read rest_api:write"``). Raises
    ``ConfigurationError`` (``invalid_scope_value``) for a token with forbidden characters.
    """
    items = scopes.split(" ") if isinstance(scopes, str) else list(scopes)
    result: list[str] = []
    for item in items:
        if isinstance(scopes, str) and item == "":
            continue  # tolerate doubled spaces in a configured string
        if not is_scope_token(item):
            raise ConfigurationError(
                "a scope must be 1 or more of the characters RFC 6749 §3.3 allows",
                error="invalid_scope_value",
            )
        if item not in result:
            result.append(item)
    return tuple(result)


def join_scopes(scopes: Iterable[str]) -> str:
    """The ``scope`` parameter value: validated tokens separated by single spaces."""
    return " ".join(normalize_scopes(scopes))


def team_scope(team_id: str) -> str:
    """``team_{id}`` for a 24-hex team id (lowercased, as Bipsync ids are written)."""
    if not isinstance(team_id, str) or _TEAM_ID.fullmatch(team_id) is None:
        raise ConfigurationError(
            "a Bipsync team id is 24 hexadecimal characters", error="invalid_scope_value"
        )
    return f"team_{team_id.lower()}"
