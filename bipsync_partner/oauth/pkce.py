"""PKCE (RFC 7636) with the S256 method, which Bipsync enforces.

The verifier is 43-128 characters from the unreserved set (§4.1); the challenge is
``BASE64URL(SHA256(ASCII(verifier)))`` without padding (§4.2). Generation and hashing come from
authlib; the length and alphabet rules are checked here so a bad verifier never leaves the process.
"""

from __future__ import annotations

import re
from typing import Final

from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from bipsync_partner.oauth.errors import ConfigurationError

MIN_VERIFIER_LENGTH: Final = 43
MAX_VERIFIER_LENGTH: Final = 128
#: 64 characters from a 62-letter alphabet: about 381 bits of entropy.
DEFAULT_VERIFIER_LENGTH: Final = 64
CODE_CHALLENGE_METHOD: Final = "S256"

# RFC 7636 §4.1: code-verifier = 43*128unreserved, unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
_VERIFIER: Final = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def validate_code_verifier(verifier: str) -> str:
    """Return ``verifier`` if RFC 7636 §4.1 allows it, else raise ``ConfigurationError``."""
    if not isinstance(verifier, str) or _VERIFIER.fullmatch(verifier) is None:
        raise ConfigurationError(
            "a PKCE code verifier must be 43-128 unreserved characters (RFC 7636 §4.1)",
            error="invalid_code_verifier",
        )
    return verifier


def generate_code_verifier(length: int = DEFAULT_VERIFIER_LENGTH) -> str:
    """A fresh verifier of ``length`` (43-128) characters from a CSPRNG (``SystemRandom``)."""
    if not MIN_VERIFIER_LENGTH <= length <= MAX_VERIFIER_LENGTH:
        raise ConfigurationError(
            "a PKCE code verifier must be 43-128 characters (RFC 7636 §4.1)",
            error="invalid_code_verifier",
        )
    return validate_code_verifier(str(generate_token(length)))


def s256_code_challenge(verifier: str) -> str:
    """``BASE64URL(SHA256(verifier))`` without padding (RFC 7636 §4.2)."""
    return str(create_s256_code_challenge(validate_code_verifier(verifier)))
