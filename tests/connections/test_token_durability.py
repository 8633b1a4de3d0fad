"""A rotated refresh token is the grant's only copy: its commit waits for the disk even in a
session that commits everything else asynchronously (a sync slice runs with
``synchronous_commit = off`` and refreshes tokens inside it)."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection

from bipsync_partner.connections import tokens


def _setting() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        value: str = cursor.fetchone()[0]
    return value


@pytest.mark.parametrize("wait", [True, False])
def test_a_token_transaction_commits_synchronously_in_an_asynchronous_session(
    transactional_db: None, wait: bool
) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
    try:
        with tokens._row_lock(uuid.uuid4(), wait=wait) as row:
            assert row is None  # no such connection: the transaction is what is looked at
            assert _setting() == "on"
        assert _setting() == "off"  # only the token transaction, not the rest of the session
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET synchronous_commit")
