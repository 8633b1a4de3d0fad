"""AES-256-GCM encryption of secrets: key parsing, key ids, binding to a context."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pytest_django.fixtures import Settings

from bipsync_partner.connections import crypto
from bipsync_partner.connections.crypto import new_encryption_key

CONTEXT = "connections.connection:0b7f6f0e-2c1e-4a51-9d4e-4d4cf2d7a0a1:access_token"
SECRET = "a-secret-token-value-1234567890"


def test_it_round_trips_a_secret() -> None:
    ring = crypto.Keyring(crypto.parse_keys([new_encryption_key()]))
    ciphertext = ring.encrypt(SECRET, context=CONTEXT)
    assert SECRET not in ciphertext
    assert ring.decrypt(ciphertext, context=CONTEXT) == SECRET


def test_it_uses_a_fresh_nonce_for_every_encryption() -> None:
    ring = crypto.Keyring(crypto.parse_keys([new_encryption_key()]))
    assert ring.encrypt(SECRET, context=CONTEXT) != ring.encrypt(SECRET, context=CONTEXT)


def test_the_ciphertext_names_its_version_and_key_id() -> None:
    entry = new_encryption_key()
    ring = crypto.Keyring(crypto.parse_keys([entry]))
    ciphertext = ring.encrypt(SECRET, context=CONTEXT)
    key_id = entry.split(":")[0]
    assert ciphertext.startswith(f"v1:{key_id}:")
    assert crypto.key_id_of(ciphertext) == key_id
    assert ring.is_current(ciphertext)


def test_the_first_key_encrypts_and_every_key_decrypts() -> None:
    old, new = new_encryption_key(), new_encryption_key()
    before = crypto.Keyring(crypto.parse_keys([old]))
    after = crypto.Keyring(crypto.parse_keys([new, old]))
    old_ciphertext = before.encrypt(SECRET, context=CONTEXT)
    assert after.decrypt(old_ciphertext, context=CONTEXT) == SECRET
    assert not after.is_current(old_ciphertext)
    assert crypto.key_id_of(after.encrypt(SECRET, context=CONTEXT)) == new.split(":")[0]


def test_it_refuses_a_ciphertext_under_a_key_it_does_not_have() -> None:
    ciphertext = crypto.Keyring(crypto.parse_keys([new_encryption_key()])).encrypt(
        SECRET, context=CONTEXT
    )
    other = crypto.Keyring(crypto.parse_keys([new_encryption_key()]))
    with pytest.raises(crypto.DecryptionError, match="not in TOKEN_ENCRYPTION_KEYS") as info:
        other.decrypt(ciphertext, context=CONTEXT)
    assert SECRET not in str(info.value)


def test_it_refuses_a_wrong_key_that_claims_the_right_id() -> None:
    entry = new_encryption_key()
    key_id = entry.split(":")[0]
    impostor = f"{key_id}:{new_encryption_key().split(':')[1]}"
    ciphertext = crypto.Keyring(crypto.parse_keys([entry])).encrypt(SECRET, context=CONTEXT)
    with pytest.raises(crypto.DecryptionError, match="does not decrypt") as info:
        crypto.Keyring(crypto.parse_keys([impostor])).decrypt(ciphertext, context=CONTEXT)
    assert SECRET not in str(info.value)
    assert ciphertext not in str(info.value)


def test_a_ciphertext_bound_to_one_context_fails_in_another() -> None:
    ring = crypto.Keyring(crypto.parse_keys([new_encryption_key()]))
    ciphertext = ring.encrypt(SECRET, context=CONTEXT)
    with pytest.raises(crypto.DecryptionError):
        ring.decrypt(ciphertext, context=CONTEXT.replace("access_token", "refresh_token"))
    with pytest.raises(crypto.DecryptionError):
        ring.decrypt(ciphertext, context=CONTEXT.replace("0b7f", "1b7f"))


def test_a_tampered_ciphertext_fails() -> None:
    ring = crypto.Keyring(crypto.parse_keys([new_encryption_key()]))
    ciphertext = ring.encrypt(SECRET, context=CONTEXT)
    flipped = ciphertext[:-3] + ("A" if ciphertext[-3] != "A" else "B") + ciphertext[-2:]
    with pytest.raises(crypto.DecryptionError):
        ring.decrypt(flipped, context=CONTEXT)
    with pytest.raises(crypto.DecryptionError, match="not a ciphertext"):
        ring.decrypt(SECRET, context=CONTEXT)


@pytest.mark.parametrize(
    ("entry", "sentence"),
    [
        ("no-colon-at-all", "not of the form <key id>:<base64url of 32 bytes>"),
        ("bad id!:AAAA", "not of the form"),
        ("k1:not*base64", "not valid base64url"),
        ("k1:" + "A" * 22, "decodes to 16 bytes; AES-256 needs exactly 32"),
    ],
)
def test_it_rejects_malformed_keys_with_a_sentence(entry: str, sentence: str) -> None:
    with pytest.raises(crypto.KeyConfigurationError, match="entry 2") as info:
        crypto.parse_keys([new_encryption_key(), entry])
    assert sentence in str(info.value)
    key_material = entry.partition(":")[2]
    if key_material:
        assert key_material not in str(info.value)


def test_it_rejects_a_key_id_listed_twice() -> None:
    entry = new_encryption_key()
    key_id = entry.split(":")[0]
    with pytest.raises(crypto.KeyConfigurationError, match="twice"):
        crypto.parse_keys([entry, f"{key_id}:{new_encryption_key().split(':')[1]}"])


def test_it_refuses_to_encrypt_without_any_key(settings: Settings) -> None:
    settings.TOKEN_ENCRYPTION_KEYS = []
    with pytest.raises(crypto.EncryptionError, match="is empty"):
        crypto.encrypt(SECRET, context=CONTEXT)


def test_the_module_functions_follow_the_settings(settings: Settings) -> None:
    old, new = new_encryption_key(), new_encryption_key()
    settings.TOKEN_ENCRYPTION_KEYS = [old]
    ciphertext = crypto.encrypt(SECRET, context=CONTEXT)
    settings.TOKEN_ENCRYPTION_KEYS = [new, old]
    assert crypto.decrypt(ciphertext, context=CONTEXT) == SECRET
    settings.TOKEN_ENCRYPTION_KEYS = [new]
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(ciphertext, context=CONTEXT)


def test_a_malformed_key_stops_the_app_at_start_up_with_a_sentence() -> None:
    secret_part = "A" * 22
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bipsync_partner.settings",
        "DEBUG": "1",
        "TOKEN_ENCRYPTION_KEYS": f"k1:{secret_part}",
    }
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "TOKEN_ENCRYPTION_KEYS entry 1 (key id 'k1') decodes to 16 bytes" in result.stderr
    assert secret_part not in result.stderr


def test_a_good_key_lets_the_app_start() -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bipsync_partner.settings",
        "DEBUG": "1",
        "TOKEN_ENCRYPTION_KEYS": new_encryption_key(),
    }
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
