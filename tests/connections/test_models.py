"""The Connection model and its encrypted fields, against the real database."""

from __future__ import annotations

import pickle
import uuid
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, models, transaction
from django.test.utils import isolate_apps
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.connections import crypto
from bipsync_partner.connections.crypto import new_encryption_key
from bipsync_partner.connections.fields import EncryptedTextField, SealedValue
from bipsync_partner.connections.models import Connection, ConnectionEvent
from tests.connections.conftest import MakeConnection

pytestmark = pytest.mark.django_db

SECRET_COLUMNS = ("access_token", "refresh_token", "client_secret")


def raw_row(pk: uuid.UUID) -> dict[str, object]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM connections_connection WHERE id = %s", [pk])
        assert cursor.description is not None
        names = [column.name for column in cursor.description]
        row = cursor.fetchone()
    assert row is not None
    return dict(zip(names, row, strict=True))


def test_the_raw_database_row_contains_no_plaintext(make_connection: MakeConnection) -> None:
    conn = make_connection(
        kind=Connection.Kind.SERVICE_ACCOUNT,
        user=None,
        access_token="plain-access-token-AAAA",
        refresh_token="plain-refresh-token-BBBB",
    )
    row = raw_row(conn.pk)
    everything = " ".join(str(value) for value in row.values())
    assert "plain-access-token-AAAA" not in everything
    assert "plain-refresh-token-BBBB" not in everything
    assert str(row["access_token"]).startswith("v1:")
    assert str(row["refresh_token"]).startswith("v1:")


def test_it_decrypts_on_access_after_loading(make_connection: MakeConnection) -> None:
    conn = make_connection(access_token="the-access-token", refresh_token="the-refresh-token")
    loaded = Connection.objects.get(pk=conn.pk)
    assert loaded.access_token == "the-access-token"
    assert loaded.refresh_token == "the-refresh-token"


def test_a_ciphertext_copied_into_another_row_fails_to_decrypt(
    make_connection: MakeConnection, bob: User
) -> None:
    victim = make_connection(access_token="alice-token")
    thief = make_connection(user=bob, access_token="bob-token")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE connections_connection SET access_token = %s WHERE id = %s",
            [str(raw_row(victim.pk)["access_token"]), thief.pk],
        )
    with pytest.raises(crypto.DecryptionError) as info:
        _ = Connection.objects.get(pk=thief.pk).access_token
    assert "alice-token" not in str(info.value)


def test_a_ciphertext_copied_into_another_field_fails_to_decrypt(
    make_connection: MakeConnection,
) -> None:
    conn = make_connection(access_token="the-access-token")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE connections_connection SET refresh_token = access_token WHERE id = %s",
            [conn.pk],
        )
    with pytest.raises(crypto.DecryptionError):
        _ = Connection.objects.get(pk=conn.pk).refresh_token


def test_loading_rows_decrypts_nothing_so_a_wrong_key_fails_only_on_use(
    make_connection: MakeConnection, settings: Settings
) -> None:
    make_connection(access_token="token-one")
    settings.TOKEN_ENCRYPTION_KEYS = [new_encryption_key()]
    loaded = list(Connection.objects.all())
    assert [c.tenant for c in loaded] == ["acme"]
    assert "acme" in str(loaded[0])
    with pytest.raises(crypto.DecryptionError, match="not in TOKEN_ENCRYPTION_KEYS"):
        _ = loaded[0].access_token


def test_str_and_repr_never_show_secrets(make_connection: MakeConnection) -> None:
    conn = make_connection(access_token="access-XYZ", refresh_token="refresh-XYZ")
    _ = conn.access_token  # decrypted and cached in memory; still not shown
    for text in (str(conn), repr(conn), str(conn.__dict__), repr(vars(conn))):
        assert "access-XYZ" not in text
        assert "refresh-XYZ" not in text
    assert "User connection to acme for Acme Research" in str(conn)
    assert "kind=user" in repr(conn)


def test_assigning_plaintext_encrypts_on_save_and_bumps_nothing_else(
    make_connection: MakeConnection,
) -> None:
    conn = make_connection()
    conn.access_token = "rotated-access"
    conn.save(update_fields=["access_token"])
    assert "rotated-access" not in str(raw_row(conn.pk)["access_token"])
    assert Connection.objects.get(pk=conn.pk).access_token == "rotated-access"


def test_refresh_from_db_reloads_without_decrypting(
    make_connection: MakeConnection, settings: Settings
) -> None:
    conn = make_connection(access_token="first")
    other = Connection.objects.get(pk=conn.pk)
    other.access_token = "second"
    other.save()
    settings.TOKEN_ENCRYPTION_KEYS = [new_encryption_key()]
    conn.refresh_from_db()  # would fail if it decrypted
    assert conn.version == other.version


def test_refresh_from_db_sees_the_new_token(make_connection: MakeConnection) -> None:
    conn = make_connection(access_token="first")
    other = Connection.objects.get(pk=conn.pk)
    other.access_token = "second"
    other.save()
    conn.refresh_from_db()
    assert conn.access_token == "second"
    conn.save()  # saving an unchanged, reloaded value keeps it decryptable
    assert Connection.objects.get(pk=conn.pk).access_token == "second"


def test_a_deferred_secret_loads_when_read(make_connection: MakeConnection) -> None:
    conn = make_connection(access_token="deferred-token")
    loaded = Connection.objects.only("id", "tenant").get(pk=conn.pk)
    assert loaded.access_token == "deferred-token"


def test_values_gives_sealed_values_not_plaintext(make_connection: MakeConnection) -> None:
    make_connection(access_token="values-token")
    (value,) = Connection.objects.values_list("access_token", flat=True)
    assert isinstance(value, SealedValue)
    assert "values-token" not in repr(value)
    with pytest.raises(crypto.DecryptionError, match="without its row"):
        value.reveal()


def test_queryset_update_with_a_plaintext_is_refused(make_connection: MakeConnection) -> None:
    conn = make_connection()
    with pytest.raises(TypeError, match="is encrypted") as info, transaction.atomic():
        Connection.objects.filter(pk=conn.pk).update(access_token="sneaky-plaintext")
    assert "sneaky-plaintext" not in str(info.value)
    Connection.objects.filter(pk=conn.pk).update(access_token=None)
    assert Connection.objects.get(pk=conn.pk).access_token is None


def test_bulk_update_with_a_plaintext_is_refused(make_connection: MakeConnection) -> None:
    conn = make_connection()
    conn.access_token = "bulk-plaintext"
    with pytest.raises(TypeError, match="is encrypted"), transaction.atomic():
        Connection.objects.bulk_update([conn], ["access_token"])


def test_only_isnull_lookups_are_allowed_on_secrets(make_connection: MakeConnection) -> None:
    conn = make_connection(refresh_token=None)
    assert list(Connection.objects.filter(refresh_token__isnull=True)) == [conn]
    with pytest.raises(Exception, match=r"Unsupported lookup|is encrypted"):
        list(Connection.objects.filter(access_token="anything"))


def test_bulk_create_encrypts(team: Team) -> None:
    conns = Connection.objects.bulk_create(
        [
            Connection(team=team, tenant="acme", kind="service_account", access_token="bulk-a"),
            Connection(team=team, tenant="globex", kind="service_account", access_token="bulk-b"),
        ]
    )
    for conn, plain in zip(conns, ["bulk-a", "bulk-b"], strict=True):
        assert plain not in str(raw_row(conn.pk)["access_token"])
        assert Connection.objects.get(pk=conn.pk).access_token == plain


def test_pickling_keeps_only_ciphertext(make_connection: MakeConnection) -> None:
    conn = Connection.objects.get(pk=make_connection(access_token="pickled-token").pk)
    assert conn.access_token == "pickled-token"
    data = pickle.dumps(conn)
    assert b"pickled-token" not in data
    assert pickle.loads(data).access_token == "pickled-token"
    fresh = Connection(team=conn.team, tenant="x", kind="service_account", access_token="unsaved")
    with pytest.raises(TypeError, match="unsaved secret"):
        pickle.dumps(fresh)


def test_a_copied_instance_gets_its_secrets_rebound_to_the_new_row(
    make_connection: MakeConnection, team: Team
) -> None:
    conn = Connection.objects.get(pk=make_connection(access_token="copied-token").pk)
    conn.pk = uuid.uuid4()
    conn._state.adding = True
    conn.kind = Connection.Kind.SERVICE_ACCOUNT
    conn.user = None
    conn.save()
    assert Connection.objects.get(pk=conn.pk).access_token == "copied-token"


def test_dumpdata_style_serialisation_holds_ciphertext(make_connection: MakeConnection) -> None:
    from django.core import serializers

    conn = make_connection(access_token="serialised-token")
    text = serializers.serialize("json", [Connection.objects.get(pk=conn.pk)])
    assert "serialised-token" not in text
    assert '"access_token": "v1:' in text


def test_one_live_service_account_per_team_and_tenant(team: Team) -> None:
    Connection.objects.create(team=team, tenant="acme", kind="service_account")
    with pytest.raises(IntegrityError), transaction.atomic():
        Connection.objects.create(team=team, tenant="acme", kind="service_account")
    # A disconnected one does not count; another tenant is another connection.
    Connection.objects.filter(team=team).update(status=Connection.Status.DISCONNECTED)
    Connection.objects.create(team=team, tenant="acme", kind="service_account")
    Connection.objects.create(team=team, tenant="globex", kind="service_account")


def test_one_live_user_connection_per_member_and_tenant(
    make_connection: MakeConnection, bob: User
) -> None:
    make_connection()
    with pytest.raises(IntegrityError), transaction.atomic():
        make_connection()
    make_connection(user=bob)
    make_connection(kind=Connection.Kind.DEVICE)


def test_user_connections_need_a_member_and_team_connections_none(team: Team, alice: User) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Connection.objects.create(team=team, tenant="acme", kind="user")
    with pytest.raises(IntegrityError), transaction.atomic():
        Connection.objects.create(team=team, user=alice, tenant="acme", kind="service_account")


def test_machine_connections_need_client_id_and_team_id(team: Team) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Connection.objects.create(team=team, tenant="acme", kind="client_credentials")
    conn = Connection.objects.create(
        team=team,
        tenant="acme",
        kind="client_credentials",
        client_id="customer-machine-app",
        client_secret="machine-secret",
        bipsync_team_id="0123456789abcdef01234567",
    )
    assert "machine-secret" not in str(raw_row(conn.pk)["client_secret"])


def test_every_status_has_a_sentence() -> None:
    for status in Connection.Status:
        assert Connection(status=status).status_sentence.endswith(".")


def test_set_tokens_bumps_the_version_and_clears_failures(make_connection: MakeConnection) -> None:
    conn = make_connection()
    conn.status = Connection.Status.FAILING
    conn.consecutive_failures = 3
    conn.last_error_code = "timeout"
    version = conn.version
    fields = conn.set_tokens(
        access_token="new-a", refresh_token="new-r", access_expires_at=timezone.now()
    )
    conn.save(update_fields=fields)
    conn = Connection.objects.get(pk=conn.pk)
    assert conn.version == version + 1
    assert conn.status == Connection.Status.ACTIVE
    assert (conn.consecutive_failures, conn.last_error_code) == (0, "")
    assert (conn.access_token, conn.refresh_token) == ("new-a", "new-r")


def test_wipe_tokens_leaves_no_secret(make_connection: MakeConnection) -> None:
    conn = make_connection()
    conn.save(update_fields=conn.wipe_tokens())
    row = raw_row(conn.pk)
    assert all(row[name] is None for name in SECRET_COLUMNS)


def test_record_appends_an_event_with_the_actor(
    make_connection: MakeConnection, alice: User
) -> None:
    conn = make_connection()
    conn.record(ConnectionEvent.Kind.CONNECTED, alice, "Alice connected acme.")
    conn.record(ConnectionEvent.Kind.REFRESHED, None, "Tokens refreshed.")
    events = list(conn.events.all())
    assert [e.kind for e in events] == ["refreshed", "connected"]
    assert events[0].actor_display == "the app"
    assert events[1].actor_display == "alice@example.com"


def test_due_for_refresh_finds_expiring_and_retryable_connections(
    make_connection: MakeConnection, bob: User, team: Team
) -> None:
    now = timezone.now()
    soon = make_connection(access_expires_at=now + timedelta(minutes=5))
    make_connection(user=bob, access_expires_at=now + timedelta(hours=1))  # not yet
    retry_due = make_connection(
        kind=Connection.Kind.DEVICE,
        status=Connection.Status.FAILING,
        access_expires_at=now,
        next_retry_at=now - timedelta(seconds=1),
    )
    make_connection(
        kind=Connection.Kind.DEVICE,
        tenant="globex",
        status=Connection.Status.FAILING,
        access_expires_at=now,
        next_retry_at=now + timedelta(minutes=1),  # still backing off
    )
    make_connection(
        tenant="initech", status=Connection.Status.NEEDS_RECONNECT, access_expires_at=now
    )
    due = Connection.objects.due_for_refresh(now=now, horizon=timedelta(minutes=10))
    assert set(due) == {soon, retry_due}


def test_the_due_rule_scales_the_leeway_to_the_lifetime_alike_in_python_and_in_sql(
    make_connection: MakeConnection, bob: User, team: Team
) -> None:
    now = timezone.now()
    window, refresh_window = timedelta(minutes=10), timedelta(days=3)
    cases = {
        # (lifetime, seconds left): due?
        (timedelta(seconds=60), 40): False,  # a 60 s token is due in its last 30 s only
        (timedelta(seconds=60), 20): True,
        (timedelta(hours=1), 500): True,  # a long one within the whole window
        (timedelta(hours=1), 700): False,
        (None, 500): True,  # unknown lifetime: the window as given
        (timedelta(seconds=60), -5): True,  # expired
    }
    made = {}
    for index, ((lifetime, left), _) in enumerate(cases.items()):
        expires = now + timedelta(seconds=left)
        made[(lifetime, left)] = make_connection(
            tenant=f"t{index}",
            access_expires_at=expires,
            last_refreshed_at=expires - lifetime if lifetime is not None else None,
        )
    in_sql = set(
        Connection.objects.due_for_refresh(now=now, horizon=window, refresh_horizon=refresh_window)
    )
    for case, expected in cases.items():
        conn = made[case]
        in_python = conn.is_due_for_refresh(
            now=now, access_window=window, refresh_window=refresh_window
        )
        assert (in_python, conn in in_sql) == (expected, expected), case


def test_the_empty_key_list_is_a_system_check_warning(settings: Settings) -> None:
    from django.core import checks

    settings.TOKEN_ENCRYPTION_KEYS = []
    ids = [message.id for message in checks.run_checks(tags=[checks.Tags.security])]
    assert "connections.W001" in ids


@isolate_apps("bipsync_partner.connections")
def test_an_encrypted_field_on_a_model_without_a_client_side_uuid_fails_the_checks() -> None:
    class Leaky(models.Model):
        secret = EncryptedTextField(null=True)

        class Meta:
            app_label = "connections"

        def __str__(self) -> str:
            return "leaky"

    errors = Leaky._meta.get_field("secret").check()
    assert [error.id for error in errors] == ["connections.E001"]
