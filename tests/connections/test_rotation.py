"""``manage.py rotate_token_keys``: re-encryption with the current key, while the app runs."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection as db_connection
from django.db import transaction
from pytest_django.fixtures import Settings

from accounts.models import Team
from bipsync_partner.connections import crypto
from bipsync_partner.connections.crypto import new_encryption_key
from bipsync_partner.connections.fields import EncryptedTextField, SealedValue
from bipsync_partner.connections.models import Connection, ConnectionEvent
from tests.connections.conftest import MakeConnection


def key_id(entry: str) -> str:
    return entry.split(":", 1)[0]


def stored_key_ids(conn: Connection) -> set[str]:
    ids = set()
    for field in Connection.get_encrypted_fields():
        sealed = field.sealed(conn)
        if sealed is not None and sealed.key_id is not None:
            ids.add(sealed.key_id)
    return ids


def rotate(**options: Any) -> str:
    out = io.StringIO()
    call_command("rotate_token_keys", stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


@pytest.mark.django_db
def test_it_reencrypts_every_secret_and_the_old_key_can_then_go(
    settings: Settings, make_connection: MakeConnection, team: Team
) -> None:
    old, new = new_encryption_key(), new_encryption_key()
    settings.TOKEN_ENCRYPTION_KEYS = [old]
    user = make_connection(access_token="user-access", refresh_token="user-refresh")
    machine = Connection.objects.create(
        team=team,
        tenant="acme",
        kind=Connection.Kind.CLIENT_CREDENTIALS,
        client_id="machine",
        client_secret="machine-secret",
        bipsync_team_id="0123456789abcdef01234567",
        access_token="machine-access",
    )
    settings.TOKEN_ENCRYPTION_KEYS = [new, old]

    output = rotate(batch_size=1)

    assert "Re-encrypted 2 row(s)" in output
    settings.TOKEN_ENCRYPTION_KEYS = [new]  # the old key is gone: nothing was lost
    user = Connection.objects.get(pk=user.pk)
    machine = Connection.objects.get(pk=machine.pk)
    assert stored_key_ids(user) == stored_key_ids(machine) == {key_id(new)}
    assert (user.access_token, user.refresh_token) == ("user-access", "user-refresh")
    assert (machine.access_token, machine.client_secret) == ("machine-access", "machine-secret")
    assert user.events.get().kind == ConnectionEvent.Kind.KEY_ROTATED
    assert key_id(new) in user.events.get().message


@pytest.mark.django_db
def test_it_is_idempotent_and_does_not_touch_the_token_version(
    settings: Settings, make_connection: MakeConnection
) -> None:
    old, new = new_encryption_key(), new_encryption_key()
    settings.TOKEN_ENCRYPTION_KEYS = [old]
    conn = make_connection()
    settings.TOKEN_ENCRYPTION_KEYS = [new, old]
    rotate()
    assert "Re-encrypted 0 row(s) with key" in rotate()
    assert "1 row(s) were already on it" in rotate()
    stored = Connection.objects.get(pk=conn.pk)
    assert stored.version == conn.version
    assert stored.events.count() == 1


@pytest.mark.django_db
def test_it_reports_rows_under_a_missing_key_and_leaves_them_alone(
    settings: Settings, make_connection: MakeConnection
) -> None:
    lost, new = new_encryption_key(), new_encryption_key()
    settings.TOKEN_ENCRYPTION_KEYS = [lost]
    conn = make_connection()
    before = Connection.get_encrypted_fields()[0].sealed(Connection.objects.get(pk=conn.pk))
    settings.TOKEN_ENCRYPTION_KEYS = [new]
    with pytest.raises(CommandError, match="not in TOKEN_ENCRYPTION_KEYS") as info:
        rotate()
    assert str(conn.pk) in str(info.value)
    after = Connection.get_encrypted_fields()[0].sealed(Connection.objects.get(pk=conn.pk))
    assert before is not None
    assert after is not None
    assert after.ciphertext == before.ciphertext


@pytest.mark.django_db
def test_it_refuses_to_run_without_a_key(settings: Settings) -> None:
    settings.TOKEN_ENCRYPTION_KEYS = []
    with pytest.raises(CommandError, match="is empty"):
        rotate()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_rotation_running_during_refreshes_loses_no_token(
    settings: Settings, make_connection: MakeConnection
) -> None:
    """An old process (still encrypting with the old key) keeps refreshing tokens the way the
    token service does (lock, a slow exchange, write, commit) while the rotation runs. Every row
    must end with the last token the refresher wrote, all on the new key."""
    old, new = new_encryption_key(), new_encryption_key()
    settings.TOKEN_ENCRYPTION_KEYS = [old]
    conns = [make_connection(tenant=f"tenant-{n}", access_token=f"start-{n}") for n in range(12)]
    settings.TOKEN_ENCRYPTION_KEYS = [new, old]
    old_ring = crypto.Keyring(crypto.parse_keys([old]))
    access_field = Connection._meta.get_field("access_token")
    assert isinstance(access_field, EncryptedTextField)
    latest: dict[Any, str] = {c.pk: f"start-{n}" for n, c in enumerate(conns)}
    stop = threading.Event()
    errors: list[BaseException] = []

    def refresher() -> None:
        counter = 0
        try:
            while not stop.is_set():
                for conn in conns:
                    counter += 1
                    value = f"refreshed-{counter}"
                    with transaction.atomic():
                        row = Connection.objects.select_for_update().get(pk=conn.pk)
                        time.sleep(0.003)  # the exchange with Bipsync, lock held
                        context = access_field.context_for(row)
                        row.__dict__["access_token"] = SealedValue(
                            ciphertext=old_ring.encrypt(value, context=context),
                            plaintext=value,
                            context=context,
                        )
                        row.version += 1
                        row.save(update_fields=["access_token", "version"])
                    latest[conn.pk] = value
        except BaseException as exc:
            errors.append(exc)
        finally:
            db_connection.close()

    thread = threading.Thread(target=refresher)
    thread.start()
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            rotate(batch_size=5)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert errors == []

    rotate()  # the refresher's last writes used the old key
    settings.TOKEN_ENCRYPTION_KEYS = [new]
    for conn in conns:
        stored = Connection.objects.get(pk=conn.pk)
        assert stored_key_ids(stored) == {key_id(new)}
        assert stored.access_token == latest[conn.pk]
        assert stored.refresh_token is not None
    assert ConnectionEvent.objects.filter(kind=ConnectionEvent.Kind.KEY_ROTATED).count() > len(
        conns
    )
