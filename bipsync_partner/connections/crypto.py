"""Authenticated encryption of secrets at rest: AES-256-GCM with keys from the environment.

``TOKEN_ENCRYPTION_KEYS`` holds ``<key id>:<base64url of 32 bytes>`` entries, newest first. The
first key encrypts; every listed key decrypts, so a key can be rotated in without downtime: add
the new key in front, run ``manage.py rotate_token_keys``, then drop the old key.

A ciphertext is text: ``v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>``. The version lets the
format change later; the key id names the key that can open it; the 96-bit random nonce is the
size GCM is specified for (NIST SP 800-38D §8.2.2).

Every ciphertext is bound to a *context* through GCM's associated data, e.g.
``connections.connection:<pk>:access_token``: a ciphertext copied into another row or another
field does not decrypt, so someone with write access to the table cannot move one team's token
into another team's connection. The version and key id are bound too.

Nothing here ever puts a plaintext or key material into an exception message.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

VERSION: Final = "v1"
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
KEY_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
SETTING: Final = "TOKEN_ENCRYPTION_KEYS"
# Separates the parts of the associated data; it cannot occur in a key id or a context we build.
_AAD_SEPARATOR: Final = "\x00"


class EncryptionError(Exception):
    """Encryption is impossible (no key configured)."""


class DecryptionError(Exception):
    """A ciphertext could not be opened: unknown format or key, tampered, or bound elsewhere.

    The message names the key id and the context only; never the ciphertext or a plaintext.
    """


class KeyConfigurationError(ImproperlyConfigured):
    """``TOKEN_ENCRYPTION_KEYS`` holds an entry we cannot use."""


@dataclass(frozen=True)
class EncryptionKey:
    """One AES-256 key and its id. The key bytes stay out of the repr."""

    key_id: str
    secret: bytes = field(repr=False)

    @functools.cached_property
    def aead(self) -> AESGCM:
        return AESGCM(self.secret)


def _b64decode(text: str) -> bytes:
    # base64url without padding, as new_encryption_key writes it; tolerate padding too.
    if not re.fullmatch(r"[A-Za-z0-9_-]*={0,2}", text):
        raise ValueError("not base64url")
    stripped = text.rstrip("=")
    return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def new_encryption_key() -> str:
    """A fresh key in the TOKEN_ENCRYPTION_KEYS format: ``<key id>:<base64url of 32 bytes>``."""
    return f"k{secrets.token_hex(3)}:{_b64encode(secrets.token_bytes(32))}"


def parse_key(entry: str, *, position: int = 1) -> EncryptionKey:
    """Parse one ``<key id>:<base64url of 32 bytes>`` entry.

    Raises ``KeyConfigurationError`` with a sentence naming the entry's position (and its key id
    when that part is well formed), never the key material.
    """
    where = f"{SETTING} entry {position}"
    key_id, sep, encoded = entry.strip().partition(":")
    if not sep or not KEY_ID_PATTERN.fullmatch(key_id):
        raise KeyConfigurationError(
            f"{where} is not of the form <key id>:<base64url of 32 bytes>, where the key id is "
            "1-32 letters, digits, '-' or '_'. Make a key with "
            "bipsync_partner.connections.crypto.new_encryption_key()."
        )
    where = f"{where} (key id {key_id!r})"
    try:
        secret = _b64decode(encoded)
    except (ValueError, binascii.Error):
        raise KeyConfigurationError(f"{where} is not valid base64url after the colon.") from None
    if len(secret) != KEY_BYTES:
        raise KeyConfigurationError(
            f"{where} decodes to {len(secret)} bytes; AES-256 needs exactly {KEY_BYTES}."
        )
    return EncryptionKey(key_id=key_id, secret=secret)


def parse_keys(entries: Sequence[str]) -> tuple[EncryptionKey, ...]:
    """Parse the whole setting; key ids must be unique (the id decides which key decrypts)."""
    keys = tuple(parse_key(entry, position=n) for n, entry in enumerate(entries, start=1))
    seen: set[str] = set()
    for key in keys:
        if key.key_id in seen:
            raise KeyConfigurationError(
                f"{SETTING} lists key id {key.key_id!r} twice; every key needs its own id."
            )
        seen.add(key.key_id)
    return keys


@dataclass(frozen=True)
class ParsedCiphertext:
    version: str
    key_id: str
    blob: bytes = field(repr=False)


def parse_ciphertext(ciphertext: str) -> ParsedCiphertext:
    """Split a stored ciphertext into version, key id and nonce‖ciphertext‖tag."""
    version, _, rest = ciphertext.partition(":")
    if version != VERSION:
        raise DecryptionError(
            "the stored value is not a ciphertext this version understands (expected "
            f"{VERSION}:<key id>:<data>)."
        )
    key_id, sep, encoded = rest.partition(":")
    if not sep or not KEY_ID_PATTERN.fullmatch(key_id):
        raise DecryptionError("the stored ciphertext has no valid key id.")
    try:
        blob = _b64decode(encoded)
    except (ValueError, binascii.Error):
        raise DecryptionError("the stored ciphertext is not valid base64url.") from None
    if len(blob) < NONCE_BYTES + 16:
        raise DecryptionError("the stored ciphertext is too short to be genuine.")
    return ParsedCiphertext(version=version, key_id=key_id, blob=blob)


def _associated_data(key_id: str, context: str) -> bytes:
    if _AAD_SEPARATOR in context:
        raise ValueError("an encryption context must not contain NUL characters")
    return _AAD_SEPARATOR.join(("bipsync-partner", VERSION, key_id, context)).encode("utf-8")


class Keyring:
    """Keys in order of preference: ``current`` encrypts, any of ``keys`` decrypts."""

    def __init__(self, keys: Sequence[EncryptionKey]) -> None:
        self.keys: tuple[EncryptionKey, ...] = tuple(keys)
        self._by_id = {key.key_id: key for key in self.keys}

    def __repr__(self) -> str:
        return f"Keyring(key_ids={[key.key_id for key in self.keys]!r})"

    @property
    def current(self) -> EncryptionKey:
        if not self.keys:
            raise EncryptionError(
                f"{SETTING} is empty, so no secret can be stored; set at least one key."
            )
        return self.keys[0]

    def encrypt(self, plaintext: str, *, context: str) -> str:
        """Encrypt ``plaintext`` with the current key, bound to ``context``."""
        key = self.current
        nonce = os.urandom(NONCE_BYTES)
        sealed = key.aead.encrypt(
            nonce, plaintext.encode("utf-8"), _associated_data(key.key_id, context)
        )
        return f"{VERSION}:{key.key_id}:{_b64encode(nonce + sealed)}"

    def decrypt(self, ciphertext: str, *, context: str) -> str:
        """Open ``ciphertext`` made for ``context``; ``DecryptionError`` otherwise."""
        parsed = parse_ciphertext(ciphertext)
        key = self._by_id.get(parsed.key_id)
        if key is None:
            raise DecryptionError(
                f"the value for {context} was encrypted with key {parsed.key_id!r}, which is "
                f"not in {SETTING}."
            )
        nonce, sealed = parsed.blob[:NONCE_BYTES], parsed.blob[NONCE_BYTES:]
        try:
            plaintext = key.aead.decrypt(nonce, sealed, _associated_data(parsed.key_id, context))
        except InvalidTag:
            raise DecryptionError(
                f"the value for {context} does not decrypt with key {parsed.key_id!r}: it was "
                "altered, copied from another row or field, or the key is not the one it was "
                "made with."
            ) from None
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptionError(f"the value for {context} is not UTF-8 text.") from None

    def is_current(self, ciphertext: str) -> bool:
        """Whether ``ciphertext`` is already under the current key (no decryption needed)."""
        return key_id_of(ciphertext) == self.current.key_id


def key_id_of(ciphertext: str) -> str:
    """The key id a ciphertext names, read without decrypting."""
    return parse_ciphertext(ciphertext).key_id


@functools.lru_cache(maxsize=8)
def _keyring_for(entries: tuple[str, ...]) -> Keyring:
    return Keyring(parse_keys(entries))


def keyring() -> Keyring:
    """The keyring of the current settings (cached per distinct setting value, so that tests
    overriding the setting get their own keyring)."""
    return _keyring_for(tuple(settings.TOKEN_ENCRYPTION_KEYS))


def encrypt(plaintext: str, *, context: str) -> str:
    """Encrypt ``plaintext`` with the current key, bound to ``context``."""
    return keyring().encrypt(plaintext, context=context)


def decrypt(ciphertext: str, *, context: str) -> str:
    """Decrypt a ciphertext made for ``context`` with whichever configured key it names."""
    return keyring().decrypt(ciphertext, context=context)


def validate_settings() -> None:
    """Parse ``TOKEN_ENCRYPTION_KEYS`` now, so that a malformed key stops the process at start-up
    (called from ``ConnectionsConfig.ready``) instead of at the first token refresh."""
    keyring()
