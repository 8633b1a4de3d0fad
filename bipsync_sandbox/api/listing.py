"""The sorted ids a token may see, cached per worker while the tenant's research is unchanged.

Offset paging makes the database walk every row before ``offset`` and count every visible row, on
each page: over 100,000 documents that is tens of milliseconds per page, quadratic over a full
scan. Instead each worker keeps, per visibility (token kind and identity), the sorted list of
visible ids, tagged with the tenant's research version (bumped by triggers on every change, see
migration 0003). A page is then a slice of that list plus a primary-key fetch of its rows.

The list and its version are read in one statement (one snapshot), so a list is never tagged with
a version newer than the data it was built from.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from django.db import connection

from bipsync_sandbox.api.auth import Principal
from bipsync_sandbox.api.models import ResearchDocument
from bipsync_sandbox.authserver.models import PrincipalKind
from bipsync_sandbox.identity.models import Tenant

# Each entry holds one list of ids (about 7 MB per 100,000 documents).
MAX_ENTRIES = 16

_VERSION_SQL = "SELECT version FROM sandbox_api_researchversion WHERE tenant_id = %s"
_TEAMS_SQL = "SELECT team_id FROM sandbox_identity_membership WHERE user_id = %s ORDER BY team_id"


@dataclass(frozen=True)
class Listing:
    version: int
    ids: tuple[str, ...]


_cache: OrderedDict[tuple[object, ...], Listing] = OrderedDict()
_lock = threading.Lock()


def _key(tenant: Tenant, principal: Principal) -> tuple[object, ...]:
    if principal.kind == PrincipalKind.USER:
        # What a user sees also depends on their teams, which change without a research write.
        with connection.cursor() as cursor:
            cursor.execute(_TEAMS_SQL, [principal.user_id])
            teams = tuple(team_id for (team_id,) in cursor.fetchall())
        return (tenant.pk, "user", principal.user_id, teams)
    if principal.kind == PrincipalKind.SERVICE_ACCOUNT:
        return (
            tenant.pk,
            "service_account",
            principal.service_account_id,
            principal.application_id,
        )
    return (tenant.pk, principal.kind, principal.team_id)


def _version(tenant: Tenant) -> int:
    with connection.cursor() as cursor:
        cursor.execute(_VERSION_SQL, [tenant.pk])
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def _build(tenant: Tenant, principal: Principal) -> Listing:
    from bipsync_sandbox.api.views import visible_to

    query = (
        ResearchDocument.objects.filter(tenant_id=tenant.pk)
        .filter(visible_to(principal))
        .order_by("id")
        .values_list("id", flat=True)
    )
    # ``inner`` is the ORM's SQL for the query above; every value stays a bound parameter.
    inner, params = query.query.sql_with_params()
    sql = (
        f"SELECT COALESCE(({_VERSION_SQL}), 0), "  # noqa: S608
        f"COALESCE((SELECT array_agg(visible.id ORDER BY visible.id) FROM ({inner}) AS visible), "
        "'{}'::varchar[])"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [tenant.pk, *params])
        version, ids = cursor.fetchone()
    return Listing(version=int(version), ids=tuple(ids))


def visible_ids(tenant: Tenant, principal: Principal) -> tuple[str, ...]:
    key = _key(tenant, principal)
    version = _version(tenant)
    with _lock:
        cached = _cache.get(key)
        if cached is not None and cached.version == version:
            _cache.move_to_end(key)
            return cached.ids
    listing = _build(tenant, principal)
    with _lock:
        current = _cache.get(key)
        if current is None or current.version <= listing.version:
            _cache[key] = listing
            _cache.move_to_end(key)
        while len(_cache) > MAX_ENTRIES:
            _cache.popitem(last=False)
    return listing.ids


def clear() -> None:
    with _lock:
        _cache.clear()
