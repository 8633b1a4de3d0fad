"""A refresh that failed in a way the token service does not expect stays that connection's
failure: it is recorded on the connection, and the rest of its batch goes on.

The token service records every failure it understands (Bipsync's answers, the network). What it
does not expect surfaces as an exception: a row whose ciphertext does not open with this worker's
``TOKEN_ENCRYPTION_KEYS`` (a key dropped too early, a row restored from elsewhere), an application
whose client id or secret is missing from this worker's settings, a database error on one row.
Such a fault belongs to that connection, and is often permanent; if it ended the batch, every
sweep would queue the same batch again and its healthy neighbours would never be refreshed.

So the sweep hands the exception here: the connection becomes ``failing`` with a sentence
saying what went wrong (never the exception's own text, which is not written for people) and a
back-off like any other failure, an event goes into its history, and the code is the
refresh's outcome in the ``bipsync_token_refreshes`` metric.
"""

from __future__ import annotations

import logging
from typing import Final
from uuid import UUID

from django.db import connection as db_connection
from django.db import models, transaction
from django.utils import timezone

from bipsync_partner.connections.clients import ClientNotConfigured
from bipsync_partner.connections.crypto import DecryptionError, KeyConfigurationError
from bipsync_partner.connections.models import Connection, ConnectionEvent

log = logging.getLogger(__name__)

UNDECRYPTABLE: Final = "undecryptable_tokens"
CLIENT_NOT_CONFIGURED: Final = "client_not_configured"
UNEXPECTED: Final = "unexpected_error"

_LATER = "the app will try again later."


def classify(error: Exception) -> tuple[str, str]:
    """The code and the sentence for people that describe ``error``."""
    if isinstance(error, DecryptionError | KeyConfigurationError):
        return UNDECRYPTABLE, (
            "The stored tokens of this connection could not be decrypted with the keys "
            f"configured on the worker that refreshed it (TOKEN_ENCRYPTION_KEYS); {_LATER}"
        )
    if isinstance(error, ClientNotConfigured):
        # Its message names the missing setting and nothing secret.
        return CLIENT_NOT_CONFIGURED, (
            "The app's Bipsync application for this connection is not configured on the worker "
            f"that refreshed it ({error}); {_LATER}"
        )
    return UNEXPECTED, (
        f"The token refresh stopped on an unexpected error ({type(error).__name__}); {_LATER}"
    )


def record(connection_id: UUID | str, error: Exception) -> str:
    """Record ``error`` on the connection (``failing``, a sentence, a back-off, an event) and
    return its code. Never raises: if even the record fails (the database is away), the log
    says so and the caller goes on with the next connection."""
    code, sentence = classify(error)
    log.error(
        "Refresh of connection %s failed unexpectedly (%s)", connection_id, code, exc_info=error
    )
    try:
        _mark_failing(connection_id, code, sentence)
    except Exception:
        log.exception("Could not record the failed refresh of connection %s", connection_id)
    return code


def _mark_failing(connection_id: UUID | str, code: str, sentence: str) -> None:
    from bipsync_partner.connections import tokens

    if not db_connection.in_atomic_block:
        # After a database error the thread's connection may be broken; a fresh one records.
        db_connection.close_if_unusable_or_obsolete()
    usable = [Connection.Status.ACTIVE, Connection.Status.FAILING]
    with transaction.atomic():
        # values(): the row's tokens are never decrypted here (they may be what failed). A row
        # someone else holds is being refreshed right now; that refresh records its own outcome.
        failures = (
            Connection.objects.select_for_update(skip_locked=True)
            .filter(pk=connection_id, status__in=usable)
            .values_list("consecutive_failures", flat=True)
            .first()
        )
        if failures is None:
            return
        now = timezone.now()
        Connection.objects.filter(pk=connection_id).update(
            status=Connection.Status.FAILING,
            consecutive_failures=models.F("consecutive_failures") + 1,
            next_retry_at=now + tokens.backoff_delay(failures + 1),
            last_error_code=code,
            last_error_message=sentence,
            updated=now,
        )
        ConnectionEvent.objects.create(
            connection_id=connection_id, kind=ConnectionEvent.Kind.REFRESH_FAILED, message=sentence
        )
