"""Hand-written SQL for the hot path: tenant routing, client lookup, lifetimes, faults, refresh.

The sandbox must sustain several hundred refreshes per second on two cores while it shares them
with the partner app and the benchmark client. Building each ORM query costs about as much CPU as
running it, so the queries every token request makes are written once here (columns taken from the
models' metadata) and their rows turned into model instances with ``Model.from_db``.
"""

# SQL text here is assembled once, at import, from model metadata (table and column names); every
# value travels as a query parameter.
# ruff: noqa: S608

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Model

from bipsync_sandbox.authserver.models import Application, ServiceAccount, Token
from bipsync_sandbox.control.models import Fault, RuntimeConfig
from bipsync_sandbox.identity.models import Team, Tenant, User

M = TypeVar("M", bound=Model)


def _fields(model: type[Model]) -> list[Any]:
    return list(model._meta.concrete_fields)


def _select(model: type[Model], alias: str) -> str:
    return ", ".join(f'{alias}."{field.column}"' for field in _fields(model))


def _table(model: type[Model]) -> str:
    return f'"{model._meta.db_table}"'


def _build(model: type[M], values: tuple[Any, ...] | list[Any]) -> M:
    fields = _fields(model)
    converted = [
        f.from_db_value(value, None, connection)
        if value is not None and hasattr(f, "from_db_value")
        else value
        for f, value in zip(fields, values, strict=True)
    ]
    return model.from_db("default", [f.attname for f in fields], converted)


def _optional(model: type[M], values: tuple[Any, ...]) -> M | None:
    return None if values[0] is None else _build(model, values)


_TENANT_SQL = f"SELECT {_select(Tenant, 't')} FROM {_table(Tenant)} t WHERE t.slug = %s"

_M2M = Application.tenants.through._meta.db_table
_CLIENT_SQL = (
    f"SELECT {_select(Application, 'a')} FROM {_table(Application)} a "
    f'JOIN "{_M2M}" m ON m.application_id = a.id '
    "WHERE a.client_id = %s AND m.tenant_id = %s"
)

_RUNTIME_SQL = (
    "SELECT access_token_lifetime, refresh_token_lifetime, code_lifetime, "
    f"device_code_lifetime, device_poll_interval FROM {_table(RuntimeConfig)} WHERE id = %s"
)

_FAULTS_SQL = (
    f"SELECT {_select(Fault, 'f')} FROM {_table(Fault)} f "
    "WHERE f.target = %s AND (f.remaining IS NULL OR f.remaining > 0) ORDER BY f.id"
)

_N_TOKEN = len(_fields(Token))
_N_USER = len(_fields(User))
_N_SA = len(_fields(ServiceAccount))
_N_TEAM = len(_fields(Team))
_REFRESH_SQL = (
    f"SELECT {_select(Token, 'tk')}, {_select(User, 'u')}, {_select(ServiceAccount, 'sa')}, "
    f"{_select(Team, 'sat')}, {_select(Team, 'tm')} "
    f"FROM {_table(Token)} tk "
    f"LEFT JOIN {_table(User)} u ON u.id = tk.user_id "
    f"LEFT JOIN {_table(ServiceAccount)} sa ON sa.id = tk.service_account_id "
    f"LEFT JOIN {_table(Team)} sat ON sat.id = sa.team_id "
    f"LEFT JOIN {_table(Team)} tm ON tm.id = tk.team_id "
    # The row lock serialises concurrent refreshes of one token: the second waits, then sees
    # the token rotated (READ COMMITTED re-checks the row) and is refused.
    "WHERE tk.refresh_hash = %s AND tk.tenant_id = %s FOR UPDATE OF tk"
)

_TOKEN_INSERT_FIELDS = [f for f in _fields(Token) if not f.primary_key]
_TOKEN_INSERT_SQL = (
    f"INSERT INTO {_table(Token)} ("
    + ", ".join(f'"{f.column}"' for f in _TOKEN_INSERT_FIELDS)
    + ") VALUES ("
    + ", ".join(["%s"] * len(_TOKEN_INSERT_FIELDS))
    + ")"
)

_ROTATE_SQL = (
    f"UPDATE {_table(Token)} SET access_revoked_at = %s, refresh_revoked_at = %s, "
    "revoke_reason = 'rotated' WHERE id = %s"
)


def tenant_by_slug(slug: str) -> Tenant | None:
    with connection.cursor() as cursor:
        cursor.execute(_TENANT_SQL, [slug])
        row = cursor.fetchone()
    return None if row is None else _build(Tenant, row)


def client_for_tenant(client_id: str, tenant_id: int) -> Application | None:
    with connection.cursor() as cursor:
        cursor.execute(_CLIENT_SQL, [client_id, tenant_id])
        row = cursor.fetchone()
    return None if row is None else _build(Application, row)


def runtime_lifetimes() -> tuple[int | None, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(_RUNTIME_SQL, [RuntimeConfig.SINGLETON_ID])
        row = cursor.fetchone()
    return None if row is None else tuple(row)


def live_faults(target: str) -> list[Fault]:
    with connection.cursor() as cursor:
        cursor.execute(_FAULTS_SQL, [target])
        rows = cursor.fetchall()
    return [_build(Fault, row) for row in rows]


def lock_token_by_refresh_hash(refresh_hash: str, tenant_id: int) -> Token | None:
    """The token row (locked until commit) with its user, service account and team attached."""
    with connection.cursor() as cursor:
        cursor.execute(_REFRESH_SQL, [refresh_hash, tenant_id])
        row = cursor.fetchone()
    if row is None:
        return None
    at = 0
    token = _build(Token, row[at : at + _N_TOKEN])
    at += _N_TOKEN
    user = _optional(User, row[at : at + _N_USER])
    at += _N_USER
    account = _optional(ServiceAccount, row[at : at + _N_SA])
    at += _N_SA
    account_team = _optional(Team, row[at : at + _N_TEAM])
    at += _N_TEAM
    team = _optional(Team, row[at : at + _N_TEAM])
    # Attach the related rows to Django's relation caches, so that no further query is made.
    if account is not None and account_team is not None:
        account.team = account_team
    token.user = user
    token.service_account = account
    token.team = team
    return token


def insert_token(token: Token) -> None:
    """Insert an unsaved Token (its id is not needed afterwards)."""
    values = [f.get_db_prep_save(f.pre_save(token, True), connection) for f in _TOKEN_INSERT_FIELDS]
    with connection.cursor() as cursor:
        cursor.execute(_TOKEN_INSERT_SQL, values)


def rotate_token(token_id: int, now: datetime) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_ROTATE_SQL, [now, now, token_id])
