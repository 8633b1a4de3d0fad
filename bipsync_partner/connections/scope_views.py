"""Re-consent: the authorization-code flow again, asking for the scopes a connection lacks.

The connection's page shows the scopes granted against those the team needs
(:mod:`~bipsync_partner.connections.scopes`); this POST starts the flow for that connection
with everything it needs, and the callback stores the new grant on the same connection.
"""

from __future__ import annotations

from typing import cast
from uuid import UUID

from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from accounts.teams import TeamRequest, team_view
from bipsync_partner.connections import authorization_code, connect_limits, scopes
from bipsync_partner.connections.connect_errors import ConnectError
from bipsync_partner.connections.views import (
    _connection_or_404,
    _error_page,
    _may_manage,
    _session_key,
    private_answer,
)
from bipsync_partner.oauth import AuthorizationKind


@private_answer
@require_POST
@team_view()
def reconsent(request: TeamRequest, connection_id: UUID) -> HttpResponse:
    connection = _connection_or_404(request, connection_id)
    if not _may_manage(request, connection) or (
        connection.kind_spec.admin_only and not request.membership.is_admin
    ):
        raise PermissionDenied("Only team admins can re-consent the team's connections.")
    if not scopes.may_reconsent(connection):
        return _error_page(
            request,
            ConnectError(
                "This kind of connection cannot be re-consented in the browser; connect it "
                "again the way it was made."
            ),
        )
    if connection.kind_spec.personal and connection.user_id != request.user.pk:
        # Consent is the owner's own: nobody else can sign in at Bipsync as them.
        raise PermissionDenied("Only the member who made this connection can re-consent it.")
    try:
        connect_limits.check(request.user, request.membership)
        url = authorization_code.begin(
            session_key=_session_key(request),
            user=request.user,
            membership=request.membership,
            tenant=connection.tenant,
            kind=cast(AuthorizationKind, connection.kind),  # may_reconsent: a browser kind
            connection_id=connection.pk,
            scopes=scopes.check(connection).to_request,
        )
    except ConnectError as exc:
        return _error_page(request, exc)
    return redirect(url)
