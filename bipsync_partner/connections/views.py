"""Connect pages: the team's connections, one connection's history, Connect Bipsync and its
callback, labels, disconnect (confirmed on a page first), machine connections and their
reconnect.

Who sees what: an outsider gets 404 for every team page (``team_view``); admins see and manage
every connection of the team; members see their own user connections and the team-wide ones'
status, and may connect, reconnect and disconnect only their own. No template is ever given a
token: pages read status, subject, scopes and expiries only.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import User
from accounts.teams import SESSION_KEY, TeamRequest, team_view
from bipsync_partner.connections import authorization_code, connect_limits, subject_change
from bipsync_partner.connections.connect_errors import ConnectError
from bipsync_partner.connections.disconnect import disconnect as disconnect_connection
from bipsync_partner.connections.disconnect import what_disconnect_does
from bipsync_partner.connections.forms import (
    ConnectForm,
    LabelForm,
    MachineConnectionForm,
    MachineReconnectForm,
)
from bipsync_partner.connections.kinds import spec
from bipsync_partner.connections.machine import (
    DuplicateMachineConnection,
    add_machine_connection,
    reconnect_machine_connection,
)
from bipsync_partner.connections.models import Connection, ConnectionEvent
from bipsync_partner.connections.scopes import check as check_scopes
from bipsync_partner.connections.signals import summaries_of
from bipsync_partner.connections.store import MachineCredentials
from bipsync_partner.connections.visibility import visible_connections


def private_answer(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Answers of the connect flow are never stored by a cache and never name their address to
    the next site: the callback's address carries the authorization ``code`` and ``state``, and
    the connect answer sends the browser to Bipsync. ``no-store`` keeps them out of shared and
    browser caches (RFC 9111 §5.2.2.5).

    A redirect carries ``no-referrer``: nothing of the address goes to Bipsync or back to us. A
    page (a refusal, the form again, the confirmation of a held reconnect) carries
    ``strict-origin``, which names only the origin, never the path or query: its own forms must
    work, and under ``no-referrer`` a browser sends ``Origin: null`` with a form's POST (the
    Fetch standard, "serializing a request origin"), which Django's CSRF check refuses."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        add_never_cache_headers(response)
        # Set here, not by SecurityMiddleware's site-wide same-origin, which only fills it in.
        redirect_answer = 300 <= response.status_code < 400
        response.headers["Referrer-Policy"] = "no-referrer" if redirect_answer else "strict-origin"
        return response

    return wrapper


def _error_page(request: HttpRequest, error: ConnectError, *, title: str = "") -> HttpResponse:
    response = render(
        request,
        "connections/error.html",
        {"title": title or "The connection could not be made", "message": error.message},
        status=error.status,
    )
    if isinstance(error, connect_limits.TooManyConnects):
        response["Retry-After"] = str(error.retry_after)  # RFC 9110 §10.2.3, with the 429
    return response


def _visible(request: TeamRequest) -> QuerySet[Connection]:
    return visible_connections(request.team, request.user, request.membership)


def _may_manage(request: TeamRequest, connection: Connection) -> bool:
    """Admins manage everything; a member manages their own personal connections."""
    return request.membership.is_admin or connection.user_id == request.user.pk


def _connection_or_404(request: TeamRequest, connection_id: UUID) -> Connection:
    connection = _visible(request).select_related("user").filter(pk=connection_id).first()
    if connection is None:
        raise Http404("No such connection.")
    return connection


def _list_page(request: TeamRequest, form: ConnectForm, *, status: int = 200) -> HttpResponse:
    """The connections list, also when the Connect form comes back with a mistake: the same
    rows, with their actions, either way."""
    connections = list(
        _visible(request).select_related("user", "team").order_by("kind", "tenant", "created")
    )
    summaries = summaries_of(connections)
    for connection in connections:
        connection.may_manage = _may_manage(request, connection)  # type: ignore[attr-defined]
        connection.sync = summaries.get(connection.pk)  # type: ignore[attr-defined]
    return render(
        request,
        "connections/list.html",
        {
            "team": request.team,
            "connections": connections,
            "is_admin": request.membership.is_admin,
            "form": form,
        },
        status=status,
    )


@require_GET
@team_view()
def connection_list(request: TeamRequest) -> HttpResponse:
    return _list_page(request, ConnectForm())


@require_GET
@team_view()
def connection_detail(request: TeamRequest, connection_id: UUID) -> HttpResponse:
    connection = _connection_or_404(request, connection_id)
    events = ConnectionEvent.objects.filter(connection=connection).select_related("actor")[:200]
    return render(
        request,
        "connections/detail.html",
        {
            "team": request.team,
            "connection": connection,
            "events": events,
            "may_manage": _may_manage(request, connection),
            "is_admin": request.membership.is_admin,
            "label_form": LabelForm(instance=connection),
            "sync": summaries_of([connection]).get(connection.pk),
            "scope_check": check_scopes(connection),
        },
    )


@require_POST
@team_view(admin=True)
def label(request: TeamRequest, connection_id: UUID) -> HttpResponse:
    connection = _connection_or_404(request, connection_id)
    form = LabelForm(request.POST, instance=connection)
    if form.is_valid():
        form.save()
        messages.success(
            request,
            f"The label is now {connection.label}."
            if connection.label
            else "The label was removed.",
        )
    else:
        messages.error(request, " ".join(str(e) for e in form.errors["label"]))
    return redirect("connections:detail", team_slug=request.team.slug, connection_id=connection.pk)


def _session_key(request: HttpRequest) -> str:
    if request.session.session_key is None:
        request.session.save()
    key = request.session.session_key
    assert key is not None
    return key


@private_answer
@require_POST
@team_view()
def connect_start(request: TeamRequest) -> HttpResponse:
    """ "Connect Bipsync": CSRF-protected POST (Django's middleware), tenant and kind."""
    form = ConnectForm(request.POST)
    if not form.is_valid():
        return _list_page(request, form, status=400)
    kind = form.cleaned_data["kind"]
    if spec(kind).admin_only and not request.membership.is_admin:
        raise PermissionDenied("Only team admins can connect the team's service account.")
    try:
        connect_limits.check(request.user, request.membership)
        url = authorization_code.begin(
            session_key=_session_key(request),
            user=request.user,
            membership=request.membership,
            tenant=form.cleaned_data["tenant"],
            kind=kind,
            connection_id=form.cleaned_data.get("connection"),
        )
    except ConnectError as exc:
        return _error_page(request, exc)
    return redirect(url)


@private_answer
@require_GET
def callback(request: HttpRequest) -> HttpResponse:
    """Where Bipsync sends the browser back (SITE_URL + /connections/callback/, all kinds)."""
    user = request.user if isinstance(request.user, User) else None
    try:
        result = authorization_code.finish(
            query_string=request.META.get("QUERY_STRING", ""),
            session_key=request.session.session_key,
            user=user,
        )
    except ConnectError as exc:
        return _error_page(request, exc)
    if isinstance(result, authorization_code.Denied):
        messages.info(
            request,
            f"You chose not to connect {result.tenant} at Bipsync; nothing was changed. You can "
            "connect whenever you like.",
        )
        return redirect("connections:list", team_slug=result.team.slug)
    if isinstance(result, authorization_code.NeedsConfirmation):
        return redirect("connections:confirm_subject", record_id=result.record.pk)
    connection = result.connection
    request.session[SESSION_KEY] = connection.team_id
    verb = "Reconnected" if result.reconnected else "Connected"
    messages.success(request, f"{verb} to Bipsync ({connection.tenant}).")
    return redirect(
        "connections:detail", team_slug=connection.team.slug, connection_id=connection.pk
    )


@private_answer
@require_http_methods(["GET", "POST"])
def confirm_subject(request: HttpRequest, record_id: UUID) -> HttpResponse:
    """A reconnect came back as another Bipsync subject: whoever made it decides (an admin, for
    the service account)."""
    user = request.user if isinstance(request.user, User) else None
    if user is None:
        return _error_page(request, ConnectError("Sign in to confirm this reconnect.", status=403))
    session_key = request.session.session_key
    try:
        if request.method == "POST":
            if request.POST.get("decision") == "confirm":
                result = subject_change.confirm_subject_change(
                    record_id, session_key=session_key, user=user
                )
                messages.success(
                    request, "Reconnected; the connection now acts as the new Bipsync subject."
                )
                return redirect(
                    "connections:detail",
                    team_slug=result.connection.team.slug,
                    connection_id=result.connection.pk,
                )
            team = subject_change.cancel_subject_change(
                record_id, session_key=session_key, user=user
            )
            messages.info(request, "Cancelled; the connection was left as it was.")
            return redirect("connections:list", team_slug=team.slug)
        record = subject_change.held_record(record_id, session_key=session_key, user=user)
    except ConnectError as exc:
        return _error_page(request, exc)
    details = record.held_details
    connection = Connection.objects.filter(pk=details.get("connection")).first()
    return render(
        request,
        "connections/confirm_subject.html",
        {"record": record, "details": details, "connection": connection, "team": record.team},
    )


@require_http_methods(["GET", "POST"])
@team_view()
def disconnect(request: TeamRequest, connection_id: UUID) -> HttpResponse:
    """GET says what disconnecting does (at Bipsync, here, and to the research); POST does it."""
    connection = _connection_or_404(request, connection_id)
    if not _may_manage(request, connection):
        raise PermissionDenied("Only team admins can disconnect the team's connections.")
    if request.method == "GET":
        if not connection.is_live:
            messages.info(request, "This connection is already disconnected.")
            return redirect(
                "connections:detail", team_slug=request.team.slug, connection_id=connection.pk
            )
        return render(
            request,
            "connections/confirm_disconnect.html",
            {
                "team": request.team,
                "connection": connection,
                "consequences": what_disconnect_does(connection),
            },
        )
    connection = disconnect_connection(connection, request.user)
    messages.success(request, f"Disconnected from Bipsync ({connection.tenant}).")
    return redirect("connections:detail", team_slug=request.team.slug, connection_id=connection.pk)


def _machine_credentials(data: dict[str, Any]) -> MachineCredentials:
    return MachineCredentials(
        client_id=data["client_id"],
        client_secret=data["client_secret"],
        bipsync_team_id=data["bipsync_team_id"],
    )


@require_http_methods(["GET", "POST"])
@team_view(admin=True)
def machine_new(request: TeamRequest) -> HttpResponse:
    """A machine connection (client credentials) for the team's own Bipsync application."""
    form = MachineConnectionForm(request.POST or None)
    status = 200
    existing: Connection | None = None
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                result = add_machine_connection(
                    team=request.team,
                    actor=request.user,
                    tenant=data["tenant"],
                    credentials=_machine_credentials(data),
                    scopes=data["scopes"],
                    label=data["label"],
                )
            except DuplicateMachineConnection as exc:
                form.add_error(None, exc.message)
                existing, status = exc.existing, exc.status
            except ConnectError as exc:
                form.add_error(None, exc.message)
                status = exc.status
            else:
                messages.success(request, "Machine connection added; the credentials work.")
                return redirect(
                    "connections:detail",
                    team_slug=request.team.slug,
                    connection_id=result.connection.pk,
                )
        else:
            status = 400
    return render(
        request,
        "connections/machine_form.html",
        {"team": request.team, "form": form, "existing": existing},
        status=status,
    )


@require_http_methods(["GET", "POST"])
@team_view(admin=True)
def machine_reconnect(request: TeamRequest, connection_id: UUID) -> HttpResponse:
    """Reconnect a machine connection, with a new client secret or the stored one, checked with
    Bipsync before anything is saved."""
    connection = _connection_or_404(request, connection_id)
    if not connection.kind_spec.own_application:
        raise Http404("Only machine connections are reconnected here.")
    scopes = " ".join(s for s in connection.scope_list if not s.startswith("team_"))
    form = MachineReconnectForm(request.POST or None, initial={"scopes": scopes or None})
    status = 200
    existing: Connection | None = None
    if request.method == "POST":
        if form.is_valid():
            try:
                reconnect_machine_connection(
                    connection,
                    actor=request.user,
                    client_secret=form.cleaned_data["client_secret"],
                    scopes=form.cleaned_data["scopes"],
                )
            except DuplicateMachineConnection as exc:
                form.add_error(None, exc.message)
                existing, status = exc.existing, exc.status
            except ConnectError as exc:
                form.add_error(None, exc.message)
                status = exc.status
            else:
                messages.success(request, "Reconnected; Bipsync accepted the credentials.")
                return redirect(
                    "connections:detail", team_slug=request.team.slug, connection_id=connection.pk
                )
        else:
            status = 400
    return render(
        request,
        "connections/machine_reconnect.html",
        {"team": request.team, "connection": connection, "form": form, "existing": existing},
        status=status,
    )
