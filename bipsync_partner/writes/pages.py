"""The Deliveries page of a team: its writes to Bipsync by status, with their progress, links to
what they made in Bipsync, the sentence of each failure, and retry and cancel for admins.

Who sees what follows the connections' rule (:mod:`~bipsync_partner.connections.visibility`):
admins every write of the team; members the writes of the connections they can see (the
team-wide ones and their own) and those not yet given a connection.
"""

from __future__ import annotations

from typing import Final
from uuid import UUID

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.teams import TeamRequest, team_view
from bipsync_partner.connections.visibility import visible_connections
from bipsync_partner.writes import operator_actions
from bipsync_partner.writes.links import delivered_link
from bipsync_partner.writes.models import Write

PER_PAGE: Final = 50


def visible_writes(request: TeamRequest) -> QuerySet[Write]:
    writes = Write.objects.filter(team=request.team)
    if request.membership.is_admin:
        return writes
    connections = visible_connections(request.team, request.user, request.membership)
    return writes.filter(Q(connection__in=connections) | Q(connection__isnull=True))


def _counts(writes: QuerySet[Write]) -> dict[str, int]:
    rows = writes.order_by().values("status").annotate(n=Count("id"))
    counts = {str(status): 0 for status in Write.Status.values}
    counts.update({row["status"]: row["n"] for row in rows})
    return counts


def _write_or_404(request: TeamRequest, uid: UUID) -> Write:
    write = visible_writes(request).filter(uid=uid).first()
    if write is None:
        raise Http404("No such delivery.")
    return write


@require_GET
@team_view()
def deliveries(request: TeamRequest) -> HttpResponse:
    writes = visible_writes(request)
    counts = _counts(writes)
    status = request.GET.get("status", "")
    if status and status not in Write.Status.values:
        status = ""
    shown = writes.filter(status=status) if status else writes
    connection_id = request.GET.get("connection", "")
    if connection_id:
        try:
            shown = shown.filter(connection_id=UUID(connection_id))
        except ValueError:
            connection_id = ""
    page = Paginator(shown.select_related("connection").order_by("-id"), PER_PAGE).get_page(
        request.GET.get("page")
    )
    for write in page.object_list:
        write.bipsync_link = delivered_link(write)
    pending = counts[Write.Status.QUEUED] + counts[Write.Status.SENDING]
    finished = counts[Write.Status.DELIVERED] + counts[Write.Status.FAILED]
    return render(
        request,
        "writes/deliveries.html",
        {
            "team": request.team,
            "page": page,
            "counts": counts,
            "tabs": [(value, label, counts[value]) for value, label in Write.Status.choices],
            "status": status,
            "connection_filter": connection_id,
            "pending": pending,
            "progress_done": finished,
            "progress_total": finished + pending,
            "is_admin": request.membership.is_admin,
        },
    )


@require_POST
@team_view(admin=True)
def retry(request: TeamRequest, uid: UUID) -> HttpResponse:
    write = _write_or_404(request, uid)
    try:
        operator_actions.retry(write)
    except operator_actions.NotAllowed as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{write.get_kind_display()} {write.uid} is queued again.")
    return _back(request)


@require_POST
@team_view(admin=True)
def cancel(request: TeamRequest, uid: UUID) -> HttpResponse:
    write = _write_or_404(request, uid)
    try:
        cancelled = operator_actions.cancel(write)
    except operator_actions.NotAllowed as exc:
        messages.error(request, str(exc))
    else:
        also = f" with {cancelled - 1} attachment(s) waiting for it" if cancelled > 1 else ""
        messages.success(request, f"{write.get_kind_display()} {write.uid} is cancelled{also}.")
    return _back(request)


def _back(request: TeamRequest) -> HttpResponse:
    response = redirect("writes:deliveries", team_slug=request.team.slug)
    status = request.POST.get("status", "")
    if status in Write.Status.values:
        response["Location"] += f"?status={status}"
    return response
