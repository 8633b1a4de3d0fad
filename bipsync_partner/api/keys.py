"""Making and checking API keys.

A key is ``bp_<prefix>_<secret>``: the prefix (hex) finds the row, the secret is
``secrets.token_urlsafe(32)`` (256 random bits) and only its SHA-256 is stored. A slow hash
(PBKDF2, bcrypt) protects guessable passwords against a stolen table; a 256-bit random secret
cannot be guessed, and a single SHA-256 of it is as safe to store while costing microseconds on
every request rather than a third of a second.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from accounts.models import Team, User
from bipsync_partner.api.models import ApiKey

PREFIX_BYTES = 6


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    #: The whole key, shown once; never stored.
    plaintext: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    team: Team | None, name: str, scopes: Iterable[str], created_by: User | None = None
) -> NewKey:
    chosen = [s for s in ApiKey.ALL_SCOPES if s in set(scopes)]
    if not chosen:
        raise ValueError("Choose at least one scope: read or write.")
    prefix, secret = secrets.token_hex(PREFIX_BYTES), secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        team=team,
        name=name.strip() or "API key",
        prefix=prefix,
        secret_hash=_digest(secret),
        scopes=chosen,
        created_by=created_by,
    )
    return NewKey(key=key, plaintext=f"bp_{prefix}_{secret}")


def find_key(presented: str) -> ApiKey | None:
    """The live key ``presented`` is, or None (malformed, unknown, wrong secret or revoked)."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != "bp" or not parts[1] or not parts[2]:
        return None
    key = ApiKey.objects.select_related("team").filter(prefix=parts[1]).first()
    if key is None or key.is_revoked:
        return None
    if not hmac.compare_digest(key.secret_hash, _digest(parts[2])):
        return None
    return key
