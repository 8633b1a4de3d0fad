"""``/connections``: the team's Bipsync connections, their health, and "Sync now".

A key sees every connection of its team, as a team admin does on the Connections page. Status,
health and the sync sentence are the ones the pages show (``connection_problem`` of the team
overview, ``sync_sentence`` of the sync pages), so the API and the pages never disagree.
"""

from __future__ import annotations

from uuid import UUID

from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from ninja import Router, Status

from bipsync_partner.api.auth import READ, WRITE, Caller, caller
from bipsync_partner.api.paging import one
from bipsync_partner.api.problems import Problem
from bipsync_partner.api.responses import READ_ERRORS, WRITE_ERRORS
from bipsync_partner.api.schemas import (
    ConnectionList,
    ConnectionOut,
    LastSyncOut,
    SyncRequestedOut,
)
from bipsync_partner.connections.models import Connection
from bipsync_partner.sync import scheduling
from bipsync_partner.sync.models import SyncRun, SyncSchedule, may_sync, syncable_connections
from bipsync_partner.sync.status import sync_sentence
from bipsync_partner.teamhome.overview import SEVERITY, connection_problem

router = Router(tags=["connections"])


def team_connections(who: Caller) -> QuerySet[Connection]:
    return Connection.objects.filter(team=who.team)


def _last_sync(run: SyncRun | None) -> LastSyncOut | None:
    if run is None:
        return None
    return LastSyncOut(
        id=run.pk,
        status=run.status,
        trigger=run.trigger,
        queued_at=run.queued_at,
        finished_at=run.finished_at,
        seen=run.seen_count,
        error=run.error_message,
    )


def connection_out(conn: Connection, syncs: bool) -> ConnectionOut:
    now = timezone.now()
    schedule = SyncSchedule.objects.filter(connection=conn).first()
    last_run = SyncRun.objects.filter(connection=conn).first()
    problem, health = connection_problem(conn, syncs, schedule, last_run, now)
    return ConnectionOut(
        id=conn.pk,
        kind=conn.kind,
        tenant=conn.tenant,
        label=conn.label,
        subject_name=conn.subject_name,
        status=conn.status,
        status_sentence=conn.status_sentence,
        problem=problem,
        health=health,
        needs_person=problem not in ("", "disconnected"),
        syncs=syncs,
        sync_sentence=sync_sentence(conn, schedule, syncs=syncs, now=now),
        next_sync_at=schedule.next_due_at if syncs and schedule and schedule.enabled else None,
        last_sync=_last_sync(last_run),
        scopes=conn.scope_list,
    )


@router.get(
    "/connections",
    response={200: ConnectionList, **READ_ERRORS},
    auth=READ,
    summary="List connections",
)
def list_connections(request: HttpRequest) -> ConnectionList:
    who = caller(request)
    syncing = set(syncable_connections(who.team.pk).values_list("pk", flat=True))
    rows = [connection_out(c, c.pk in syncing) for c in team_connections(who)]
    # What needs a person first, as on the team's overview.
    rows.sort(key=lambda row: SEVERITY[row.problem])
    return ConnectionList(items=rows)


@router.get(
    "/connections/{connection_id}",
    response={200: ConnectionOut, **READ_ERRORS},
    auth=READ,
    summary="Get a connection",
)
def get_connection(request: HttpRequest, connection_id: UUID) -> ConnectionOut:
    conn = one(team_connections(caller(request)), connection_id, "connection")
    return connection_out(conn, may_sync(conn))


@router.post(
    "/connections/{connection_id}/sync",
    response={202: SyncRequestedOut, **WRITE_ERRORS},
    auth=WRITE,
    summary="Sync now",
)
def sync_now(request: HttpRequest, connection_id: UUID) -> Status[SyncRequestedOut]:
    conn = one(team_connections(caller(request)), connection_id, "connection")
    if not may_sync(conn):
        schedule = SyncSchedule.objects.filter(connection=conn).first()
        raise Problem(409, sync_sentence(conn, schedule, syncs=False), kind="does-not-sync")
    requested = scheduling.request_sync(conn)
    detail = (
        "The sync is queued."
        if requested.created
        else "A sync of this connection is already queued or running."
    )
    return Status(
        202,
        SyncRequestedOut(
            run_id=requested.run.pk,
            status=requested.run.status,
            created=requested.created,
            detail=detail,
        ),
    )
