"""What the team overview shows, worked out for one viewer: :func:`overview`.

Connections come in the order of what needs doing: a reconnect of the viewer's waiting for their
confirmation, then connections Bipsync no longer accepts, then those retrying, then those whose
last sync failed or that have not synced for three periods, then the healthy ones, and the
disconnected ones last. Each problem comes with the action that fixes it, when the viewer may
take it (connections/views.py decides who manages what; the same rule here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, Max, Min
from django.urls import reverse
from django.utils import timezone

from accounts.teams import TeamRequest
from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.pending import PendingAuthorizationRecord, digest
from bipsync_partner.connections.visibility import visible_connections
from bipsync_partner.sync.models import (
    DocumentSighting,
    ResearchDocument,
    SyncRun,
    SyncSchedule,
    syncable_connections,
)
from bipsync_partner.sync.visibility import research_visible_to

#: Sort order of the problems; the lower, the sooner it is shown.
SEVERITY = {
    "needs_reconnect": 1,
    "failing": 2,
    "sync_failed": 3,
    "stale": 4,
    "": 5,
    "disconnected": 6,
}


@dataclass(frozen=True)
class Action:
    """What fixes a problem: a link, or the Reconnect form of the connect flow."""

    label: str
    url: str = ""
    reconnect: bool = False
    hint: str = ""


@dataclass
class Row:
    connection: Connection
    problem: str
    sentence: str
    action: Action | None
    syncs: bool
    last_run: SyncRun | None = None
    next_sync: datetime | None = None
    documents: int = 0

    @property
    def needs_attention(self) -> bool:
        return self.problem not in ("", "disconnected")


@dataclass(frozen=True)
class HeldReconnect:
    tenant: str
    subject_name: str
    url: str


@dataclass
class Overview:
    rows: list[Row]
    held: list[HeldReconnect]
    documents: int
    last_sync: datetime | None
    next_sync: datetime | None
    connect_tenant: str
    attention: list[Row] = field(default_factory=list)

    @property
    def has_live(self) -> bool:
        return any(row.connection.is_live for row in self.rows)


def overview(request: TeamRequest) -> Overview:
    team, now = request.team, timezone.now()
    connections = list(
        visible_connections(team, request.user, request.membership)
        .select_related("user")
        .order_by("tenant", "kind", "created")
    )
    ids = [c.pk for c in connections]
    syncing = set(syncable_connections(team.pk).filter(pk__in=ids).values_list("pk", flat=True))
    schedules = {s.connection_id: s for s in SyncSchedule.objects.filter(connection_id__in=ids)}
    documents = dict(
        DocumentSighting.objects.filter(connection_id__in=ids, document__deleted_at__isnull=True)
        .values_list("connection_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    rows = [
        _row(request, c, c.pk in syncing, schedules.get(c.pk), documents.get(c.pk, 0), now)
        for c in connections
    ]
    rows.sort(key=lambda row: SEVERITY[row.problem])
    finished = SyncRun.objects.filter(connection_id__in=ids, finished_at__isnull=False)
    next_due = SyncSchedule.objects.filter(connection_id__in=syncing, enabled=True)
    return Overview(
        rows=rows,
        held=_held(request, now),
        documents=ResearchDocument.objects.filter(
            research_visible_to(team, request.user), deleted_at__isnull=True
        ).count(),
        last_sync=finished.aggregate(last=Max("finished_at"))["last"],
        next_sync=next_due.aggregate(next=Min("next_due_at"))["next"],
        connect_tenant=_known_tenant(request),
        attention=[row for row in rows if row.needs_attention],
    )


def _row(
    request: TeamRequest,
    conn: Connection,
    syncs: bool,
    schedule: SyncSchedule | None,
    documents: int,
    now: datetime,
) -> Row:
    last_run = SyncRun.objects.filter(connection=conn).first() if syncs or documents else None
    problem, sentence = connection_problem(conn, syncs, schedule, last_run, now)
    return Row(
        connection=conn,
        problem=problem,
        sentence=sentence,
        action=_action(request, conn, problem),
        syncs=syncs,
        last_run=last_run,
        next_sync=schedule.next_due_at if syncs and schedule and schedule.enabled else None,
        documents=documents,
    )


def connection_problem(
    conn: Connection,
    syncs: bool,
    schedule: SyncSchedule | None,
    last_run: SyncRun | None,
    now: datetime,
) -> tuple[str, str]:
    """What is wrong with a connection (a key of SEVERITY, "" when nothing) and the sentence
    that says so; the HTTP API answers with the same."""
    if conn.status in (Connection.Status.NEEDS_RECONNECT, Connection.Status.FAILING):
        return conn.status, conn.last_error_message or conn.status_sentence
    if conn.status == Connection.Status.DISCONNECTED:
        return "disconnected", conn.status_sentence
    if syncs and last_run is not None and last_run.status == SyncRun.Status.FAILED:
        return "sync_failed", last_run.error_message or "The last sync failed."
    if syncs and schedule is not None and schedule.is_stale(now):
        return "stale", "No successful sync within three schedule periods."
    return "", conn.status_sentence


def _may_manage(request: TeamRequest, conn: Connection) -> bool:
    return request.membership.is_admin or conn.user_id == request.user.pk


def _action(request: TeamRequest, conn: Connection, problem: str) -> Action | None:
    slug = request.team.slug
    detail = reverse("connections:detail", args=[slug, conn.pk])
    history = reverse("sync:history", args=[slug, conn.pk])
    if problem in ("needs_reconnect", "disconnected"):
        if not _may_manage(request, conn):
            return Action("Open the connection", detail, hint="Ask a team admin to reconnect it.")
        if conn.kind_spec.grant == "authorization_code" and (
            not conn.kind_spec.personal or conn.user_id == request.user.pk
        ):
            label = "Reconnect" if problem == "needs_reconnect" else "Connect again"
            return Action(label, reconnect=True)
        return Action("Open the connection", detail, hint=_reconnect_hint(conn, slug))
    if problem == "failing":
        return Action("See what fails", detail)
    if problem in ("sync_failed", "stale"):
        return Action("See the sync history", history)
    return Action("Open", detail)


def _reconnect_hint(conn: Connection, slug: str) -> str:
    if conn.kind_spec.grant == "device":
        return (
            f"Reconnect from a terminal: manage.py connect_device --email {conn.user} "
            f"--team {slug} --tenant {conn.tenant}"
        )
    return "Add the machine connection again with working credentials."


def _held(request: TeamRequest, now: datetime) -> list[HeldReconnect]:
    """Reconnects of this viewer, in this browser, waiting for them to confirm a new subject
    (the confirmation page only opens in the session that started the reconnect)."""
    session_key = request.session.session_key
    if not session_key:
        return []
    records = PendingAuthorizationRecord.objects.filter(
        team=request.team,
        user=request.user,
        session_hash=digest(session_key),
        held_until__gt=now,
    ).order_by("held_until")
    return [
        HeldReconnect(
            tenant=r.tenant,
            subject_name=str(
                r.held_details.get("subject_name") or r.held_details.get("subject") or ""
            ),
            url=reverse("connections:confirm_subject", args=[r.pk]),
        )
        for r in records
    ]


def _known_tenant(request: TeamRequest) -> str:
    """The Bipsync site the team used before (any connection of the team's, newest first)."""
    tenant = (
        Connection.objects.filter(team=request.team)
        .order_by("-created")
        .values_list("tenant", flat=True)
        .first()
    )
    return tenant or ""
