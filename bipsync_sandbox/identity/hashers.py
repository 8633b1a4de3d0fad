"""Password hashing for sandbox users (demo accounts, not real people)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher


class SandboxPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """PBKDF2 with a configurable work factor (``SANDBOX_PASSWORD_ITERATIONS``).

    Test set-up creates many users; Django's default of a million iterations would cost
    about a second per user on the 2-core CI machine.
    """

    algorithm = "sandbox_pbkdf2_sha256"

    def encode(self, password: str, salt: str, iterations: int | None = None) -> str:
        return super().encode(password, salt, iterations or settings.SANDBOX_PASSWORD_ITERATIONS)
