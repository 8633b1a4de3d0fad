"""``Authorization: Bearer <API key>``: who is calling, for which team, with which scopes.

Every request reads the key's row, so a revoked key is refused from the next request on. A team
key acts for its team. An installation key (no team; the partner's back office) names the team
in the ``X-Team`` header (its slug) on each request.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest
from ninja.security import HttpBearer

from accounts.models import Team
from bipsync_partner.api.keys import find_key
from bipsync_partner.api.models import ApiKey
from bipsync_partner.api.problems import Problem

TEAM_HEADER = "X-Team"


@dataclass(frozen=True)
class Caller:
    key: ApiKey
    team: Team


def unauthorized(detail: str) -> Problem:
    return Problem(
        401, detail, kind="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="api"'}
    )


class ApiKeyAuth(HttpBearer):
    """Requires a live key with ``scope``."""

    openapi_scheme = "bearer"

    def __init__(self, scope: str) -> None:
        super().__init__()
        self.scope = scope

    def __call__(self, request: HttpRequest) -> Caller:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("Send an API key as 'Authorization: Bearer <key>'.")
        return self.authenticate(request, token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> Caller:
        key = find_key(token)
        if key is None:
            raise unauthorized("The API key is not valid, or it was revoked.")
        if not key.has_scope(self.scope):
            raise Problem(
                403,
                f"The API key lacks the '{self.scope}' scope this needs.",
                kind="missing-scope",
            )
        key.note_use()
        return Caller(key=key, team=_team(request, key))


def _team(request: HttpRequest, key: ApiKey) -> Team:
    named = request.headers.get(TEAM_HEADER, "").strip()
    if key.team is not None:
        if named and named != key.team.slug:
            raise Problem(404, "No such team.")
        return key.team
    if not named:
        raise Problem(
            400, f"An installation key names the team in the {TEAM_HEADER} header (its slug)."
        )
    team = Team.objects.filter(slug=named).first()
    if team is None:
        raise Problem(404, "No such team.")
    return team


READ = ApiKeyAuth(ApiKey.Scope.READ)
WRITE = ApiKeyAuth(ApiKey.Scope.WRITE)


def caller(request: HttpRequest) -> Caller:
    found = getattr(request, "auth", None)
    assert isinstance(found, Caller)  # set by ApiKeyAuth before any view runs
    return found
