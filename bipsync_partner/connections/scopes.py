"""The scopes a connection has against the scopes its team's features need.

Bipsync enables scopes per application and grants them per authorization (docs/bipsync.md,
"Scopes"): reading research needs ``rest_api:read`` and the field definitions
``rest_api:fields:read`` (``BIPSYNC_SCOPES``, asked for on every connect); creating notes,
attachments and upserts needs ``rest_api:write`` (``BIPSYNC_WRITE_SCOPES``). A team needs the
write scopes once it writes to Bipsync, i.e. once anything was queued in its outbox: the need is
read from what the team does rather than from a flag an admin could forget to set, and teams
that never write are never asked to grant more than they use (least privilege).

A connection that lacks a needed scope is re-consented: the authorization-code flow runs again
asking for everything the connection needs plus what it already has, so that a re-consent
never narrows a grant (a new authorization replaces the old one at Bipsync).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from accounts.models import Team
from bipsync_partner.connections.models import Connection
from bipsync_partner.oauth import normalize_scopes


def read_scopes() -> tuple[str, ...]:
    return normalize_scopes(str(settings.BIPSYNC_SCOPES))


def write_scopes() -> tuple[str, ...]:
    return normalize_scopes(str(settings.BIPSYNC_WRITE_SCOPES))


def team_writes(team: Team) -> bool:
    """Whether the team writes to Bipsync: anything was ever queued in its outbox."""
    from bipsync_partner.writes.models import Write  # the outbox depends on connections

    return Write.objects.filter(team=team).exists()


@dataclass(frozen=True)
class ScopeCheck:
    """What one connection was granted against what its team needs."""

    granted: tuple[str, ...]
    needed: tuple[str, ...]
    writes: bool

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(scope for scope in self.needed if scope not in self.granted)

    @property
    def to_request(self) -> tuple[str, ...]:
        """What a re-consent asks for: the needed scopes, and those already granted."""
        return normalize_scopes([*self.needed, *self.granted])

    def rows(self) -> list[tuple[str, bool, bool]]:
        """(scope, needed, granted) for every scope either side names, needed ones first."""
        names = normalize_scopes([*self.needed, *self.granted])
        return [(name, name in self.needed, name in self.granted) for name in names]


def check(connection: Connection, *, writes: bool | None = None) -> ScopeCheck:
    uses_writes = team_writes(connection.team) if writes is None else writes
    needed = read_scopes() + (write_scopes() if uses_writes else ())
    return ScopeCheck(
        granted=tuple(connection.scope_list),
        needed=normalize_scopes(needed),
        writes=uses_writes,
    )


def may_reconsent(connection: Connection) -> bool:
    """Only the browser flow can ask a person to consent again; a device connection is
    re-consented from the terminal and a machine connection is the customer's own application."""
    return connection.kind_spec.grant == "authorization_code"
