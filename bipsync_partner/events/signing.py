"""Secrets and signatures in the Standard Webhooks form (https://www.standardwebhooks.com/):
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` (``v1,<base64>``, several
separated by spaces while a rotated secret overlaps), made by the ``standardwebhooks`` library."""

from __future__ import annotations

import base64
import functools
import secrets
from datetime import datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
#: 24 random bytes (192 bits); the specification asks for between 24 and 64.
SECRET_BYTES = 24


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


@functools.lru_cache(maxsize=256)
def _webhook(secret: str) -> Webhook:
    # The secret is decoded once per process, not once per event and secret.
    return Webhook(secret)


def signed_headers(
    webhook_id: str, timestamp: datetime, body: str, signing_secrets: list[str]
) -> dict[str, str]:
    signatures = " ".join(
        _webhook(secret).sign(msg_id=webhook_id, timestamp=timestamp, data=body)
        for secret in signing_secrets
    )
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }
