"""The soak's use of the sandbox admin API: the world the connections live in, faults,
revocations and counters, through the sandbox's own client. Loopback only; every call has a
timeout."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from bipsync_sandbox.client import SandboxClient
from devtools.soak.config import SoakConfig
from devtools.soak.stack import SERVICE_CLIENT_ID, USER_CLIENT_ID

# With the write scope: the soak writes notes through the service-account connections.
SCOPES = ["rest_api:read", "rest_api:fields:read", "rest_api:write"]
LOSSY_TENANT = "soak-lossy"
#: Every USER_EVERY-th connection is a member's own (user) connection; the others are the team's
#: service-account connections, the kind partner integrations mostly hold.
USER_EVERY = 5


@dataclass(frozen=True)
class TenantWorld:
    slug: str
    team_id: str
    user_id: str


@dataclass
class World:
    tenants: list[TenantWorld]
    lossy: TenantWorld | None
    plan: dict[str, Any] = field(default_factory=dict)


class SandboxAdmin:
    """The soak's steps over :class:`SandboxClient`: its world, refresh-grant faults and counters."""

    def __init__(self, base_url: str, admin_key: str) -> None:
        self.client = SandboxClient(base_url, admin_key)

    def close(self) -> None:
        self.client.close()

    def call(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        return self.client.admin(method, path, body, params)

    # -- the world -------------------------------------------------------------------------------
    def _tenant(self, slug: str) -> TenantWorld:
        self.call("POST", "/_sandbox/tenants", {"slug": slug})
        team = self.call("POST", f"/_sandbox/tenants/{slug}/teams", {"name": "Research"})
        user = self.call(
            "POST",
            f"/_sandbox/tenants/{slug}/users",
            {
                "email": f"analyst@{slug}.example",
                "password": "soak-" + slug,
                "team_id": team["id"],
                "admin": True,
                "name": f"Analyst at {slug}",
            },
        )
        return TenantWorld(slug, team["id"], user["id"])

    def build_world(
        self, config: SoakConfig, *, user_secret: str, service_secret: str, redirect_uri: str
    ) -> World:
        tenants = [self._tenant(f"soak-{n:02d}") for n in range(1, config.tenants + 1)]
        lossy = self._tenant(LOSSY_TENANT) if config.lost_replies else None
        slugs = [t.slug for t in tenants] + ([lossy.slug] if lossy else [])
        for client_id, secret, service in (
            (USER_CLIENT_ID, user_secret, False),
            (SERVICE_CLIENT_ID, service_secret, True),
        ):
            self.call(
                "POST",
                "/_sandbox/applications",
                {
                    "name": "Soak partner" + (" (service account)" if service else ""),
                    "client_id": client_id,
                    "client_secret": secret,
                    "redirect_uris": [redirect_uri],
                    "grant_types": ["authorization_code", "refresh_token"],
                    "scopes": SCOPES,
                    "service_account": service,
                    "tenants": slugs,
                },
            )
        if config.documents:
            # Research for the syncs to read; nothing changes it during the run, so a document
            # the partner marks deleted was deleted wrongly.
            for tenant in tenants:
                self.call(
                    "POST",
                    "/_sandbox/research/generate",
                    {
                        "tenant": tenant.slug,
                        "team": tenant.team_id,
                        "count": config.documents,
                        "seed": config.seed,
                        "share_with": [SERVICE_CLIENT_ID],
                    },
                )
        timings = config.timings
        # Every later token (refreshes) lives access_lifetime seconds.
        self.call("PUT", "/_sandbox/lifetimes", {"access": timings.access_lifetime})
        world = World(tenants=tenants, lossy=lossy)
        world.plan = plan_connections(config, world)
        return world

    # -- faults and the rest ---------------------------------------------------------------------
    def set_fault(self, kind: str, **options: Any) -> dict[str, Any]:
        body = {"target": "token", "kind": kind, "grant_type": "refresh_token", **options}
        body = {k: v for k, v in body.items() if v is not None}  # grant_type=None: any request
        answer: dict[str, Any] = self.call("POST", "/_sandbox/faults", body)
        return answer

    def faults(self) -> list[dict[str, Any]]:
        return self.client.faults()

    def clear_faults(self) -> None:
        self.client.clear_faults()

    def revoke_grants(self, grant_ids: list[str]) -> int:
        return self.client.revoke_grants(grant_ids)

    def refresh_counters(self) -> dict[str, int]:
        """Refresh-grant requests at the token endpoint by outcome, over the partner's clients
        (``ok``, ``invalid_grant``, ``fault_503``, ``fault_close``, ...)."""
        counters = self.client.counters()
        totals: dict[str, int] = {}
        for client_id in (USER_CLIENT_ID, SERVICE_CLIENT_ID):
            by_grant = counters.get(client_id, {}).get("token", {})
            for outcome, count in by_grant.get("refresh_token", {}).items():
                totals[outcome] = totals.get(outcome, 0) + int(count)
        return totals


def plan_connections(config: SoakConfig, world: World) -> dict[str, Any]:
    """Which connection goes where: a batch per (tenant, kind) for the seed step.

    Connection k of the regular tenants belongs to partner team k // tenants and tenant
    k % tenants, so each (team, tenant) pair holds one connection (the model allows one live
    service-account connection per team and tenant, and one user connection per member). The
    lossy tenant's connections get teams of their own after those.
    """
    lossy_count = max(12, 2 * config.lost_replies) if world.lossy else 0
    regular = config.connections - lossy_count
    teams: dict[tuple[str, str], list[int]] = {}
    by_slug = {t.slug: t for t in [*world.tenants, *([world.lossy] if world.lossy else [])]}

    def add(tenant: TenantWorld, kind: str, team_index: int) -> None:
        teams.setdefault((tenant.slug, kind), []).append(team_index)

    for k in range(regular):
        kind = "user" if k % USER_EVERY == USER_EVERY - 1 else "service_account"
        add(world.tenants[k % len(world.tenants)], kind, k // len(world.tenants))
    first_lossy_team = regular // len(world.tenants) + 1
    for k in range(lossy_count):
        assert world.lossy is not None
        add(world.lossy, "service_account", first_lossy_team + k)
    timings = config.timings
    return {
        "scopes": SCOPES,
        "syncing": config.syncing,
        "sync_interval": max(10, timings.access_lifetime // 2),
        # First tokens expire evenly over [window, lifetime]: none is due at the start, and the
        # refreshes arrive at the steady rate from the first second.
        "access_min": timings.refresh_window + timings.sweep_interval,
        "access_max": timings.access_lifetime,
        # Every first token is one of a steady state, issued a lifetime before it expires: the
        # seed says so (last_refreshed_at), since the due rule scales its window to the lifetime.
        "access_lifetime": timings.access_lifetime,
        "batches": [
            {
                "tenant": slug,
                "kind": kind,
                "client_id": USER_CLIENT_ID if kind == "user" else SERVICE_CLIENT_ID,
                "bipsync_team_id": by_slug[slug].team_id,
                "bipsync_user_id": by_slug[slug].user_id,
                # The bulk endpoint mints at most 1000 grants per call.
                "teams": indexes[start : start + 1000],
            }
            for (slug, kind), indexes in teams.items()
            for start in range(0, len(indexes), 1000)
        ],
    }


def choose_revocations(manifest: list[dict[str, Any]], count: int, seed: int) -> list[str]:
    """``count`` connections of the regular tenants whose grants the soak revokes."""
    candidates = sorted(m["connection"] for m in manifest if m["tenant"] != LOSSY_TENANT)
    return random.Random(seed).sample(candidates, min(count, len(candidates)))
