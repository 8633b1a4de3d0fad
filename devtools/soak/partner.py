"""The soak's steps that run inside a partner Django process (the soak's own settings and database).

    python -m devtools.soak.partner seed PLAN.json   -> manifest JSON on stdout
    python -m devtools.soak.partner verify           -> verification JSON on stdout

``seed`` mints grants at the sandbox (its bulk admin API) and stores each pair through the
partner's own code (``store.store_token``: encrypted fields, events), the way a completed
Connect flow does; it gives a few service-account connections a short sync schedule (the others
none), and makes the person whose page views the soak makes (``SOAK_WEB_EMAIL`` /
``SOAK_WEB_PASSWORD``) an admin of the first syncing connection's team. ``verify`` runs after the
workers have stopped: it decrypts each connection's stored refresh token and asks the sandbox whether that exact token is still the live one of its
grant. Tokens exist only inside this process and on the loopback HTTP to the sandbox; the JSON
it prints carries ids, statuses and booleans.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import django

from bipsync_sandbox.client import SandboxClient


def _sandbox() -> SandboxClient:
    return SandboxClient(
        os.environ["SOAK_SANDBOX_URL"], os.environ["SOAK_SANDBOX_ADMIN_KEY"], timeout=120
    )


def seed(plan_path: Path) -> dict[str, Any]:
    """Create the partner teams and the planned connections; return the manifest (no tokens)
    and what the web visitor needs (its team and connection)."""
    from django.utils import timezone

    from accounts.models import Membership, Team, User
    from bipsync_partner.connections.kinds import spec
    from bipsync_partner.connections.store import Grant, Owner, store_token
    from bipsync_partner.oauth.tokens import parse_token_document

    plan = json.loads(plan_path.read_text())
    teams: dict[int, tuple[Team, User]] = {}

    def team_for(index: int) -> tuple[Team, User]:
        if index not in teams:
            team = Team.objects.create(name=f"Soak desk {index:05d}", slug=f"soak-{index:05d}")
            user = User(email=f"desk-{index:05d}@soak.example", name=f"Desk {index} admin")
            user.set_unusable_password()
            user.save()
            team.add_member(user, Membership.Role.ADMIN)
            teams[index] = (team, user)
        return teams[index]

    manifest: list[dict[str, Any]] = []
    with _sandbox() as sandbox:
        for batch in plan["batches"]:
            body = {
                "tenant": batch["tenant"],
                "count": len(batch["teams"]),
                "access_min": plan["access_min"],
                "access_max": plan["access_max"],
            }
            if not spec(batch["kind"]).personal:
                body["team_id"] = batch["bipsync_team_id"]
            else:
                body["user_id"] = batch["bipsync_user_id"]
            minted = sandbox.mint_grants(batch["client_id"], body)
            for team_index, grant in zip(batch["teams"], minted["grants"], strict=True):
                team, user = team_for(team_index)
                token = parse_token_document(
                    grant,
                    status=200,
                    received_at=timezone.now(),
                    requested_scopes=plan["scopes"],
                )
                owner = Owner.of(team=team, user=user, tenant=batch["tenant"], kind=batch["kind"])
                connected = store_token(
                    owner, Grant.of(token), actor=user, target=None, note="Created by the soak."
                )
                manifest.append(
                    {
                        "connection": str(connected.connection.pk),
                        "grant": grant["grant_id"],
                        "tenant": batch["tenant"],
                        "kind": batch["kind"],
                        "team": team.slug,
                    }
                )
    _issued_a_lifetime_before_expiry(manifest, plan["access_lifetime"])
    syncing = _schedule_syncs(manifest, plan["syncing"], plan["sync_interval"])
    return {"connections": manifest, "web": _web_visitor(manifest, syncing)}


def _issued_a_lifetime_before_expiry(manifest: list[dict[str, Any]], lifetime: int) -> None:
    """The minted first tokens expire at spread-out times, as in a fleet that has been running;
    each was issued ``lifetime`` seconds before it expires, not at the seed. Without this the due
    rule, which scales its window to a token's lifetime (at most half of it), would see short-lived
    first tokens and refresh none of them in the run's first seconds."""
    from datetime import timedelta

    from django.db.models import F

    from bipsync_partner.connections.models import Connection

    ids = [m["connection"] for m in manifest]
    Connection.objects.filter(pk__in=ids).update(
        last_refreshed_at=F("access_expires_at") - timedelta(seconds=lifetime)
    )


def _schedule_syncs(manifest: list[dict[str, Any]], count: int, interval: int) -> list[str]:
    """Every ``step``-th service-account connection (so every tenant has some) syncs every
    ``interval`` seconds, the first ones due at once and the rest spread over one interval; the
    other connections get a disabled schedule, so that the sweep does not sync them all."""
    from datetime import timedelta

    from django.utils import timezone

    from bipsync_partner.sync.models import SyncSchedule

    service = [m["connection"] for m in manifest if m["kind"] == "service_account"]
    step = max(1, len(service) // count) if count else 0
    chosen = service[::step][:count] if count else []
    now = timezone.now()
    SyncSchedule.objects.bulk_create(
        [
            SyncSchedule(
                connection_id=conn_id,
                enabled=conn_id in chosen,
                interval_seconds=interval,
                next_due_at=now + timedelta(seconds=interval * index / max(1, len(chosen))),
            )
            for index, conn_id in enumerate(chosen + [c for c in service if c not in chosen])
        ]
    )
    for entry in manifest:
        entry["syncing"] = entry["connection"] in chosen
    return chosen


def _web_visitor(manifest: list[dict[str, Any]], syncing: list[str]) -> dict[str, Any]:
    from accounts.models import Membership, Team, User

    target = syncing[0] if syncing else manifest[0]["connection"]
    slug = next(m["team"] for m in manifest if m["connection"] == target)
    user = User.objects.create_user(
        os.environ["SOAK_WEB_EMAIL"], os.environ["SOAK_WEB_PASSWORD"], name="Soak visitor"
    )
    Team.objects.get(slug=slug).add_member(user, Membership.Role.ADMIN)
    return {"team": slug, "connection": target}


def verify() -> dict[str, Any]:
    """Per connection: status, error code, version, and whether its stored refresh token is the
    live one at the sandbox."""
    from bipsync_partner.connections.models import Connection, ConnectionEvent

    rows = list(Connection.objects.order_by("pk"))
    results: dict[str, dict[str, Any]] = {}
    with _sandbox() as sandbox:
        for start in range(0, len(rows), 500):
            chunk = rows[start : start + 500]
            tokens = [conn.refresh_token or "" for conn in chunk]
            answers = sandbox.introspect_batch(tokens)
            for conn, answer in zip(chunk, answers, strict=True):
                results[str(conn.pk)] = {
                    "status": conn.status,
                    "code": conn.last_error_code,
                    "message": conn.last_error_message,
                    "version": conn.version,
                    "refresh_active": bool(answer.get("active"))
                    and answer.get("token_type") == "refresh_token",
                    "refresh_reason": answer.get("revoke_reason"),
                    "refresh_revoked_at": answer.get("revoked_at"),
                    # Rotations of the connection's grant at the sandbox (None: the stored
                    # token is unknown there), beside ``version``, the partner's count plus one.
                    "sandbox_rotations": answer.get("grant_rotations"),
                    "has_refresh_token": conn.has_refresh_token,
                }
    events = Counter(ConnectionEvent.objects.values_list("kind", flat=True).order_by())
    return {"connections": results, "events": dict(events), "sync": _sync_figures()}


def _sync_figures() -> dict[str, Any]:
    """Sync runs by status and the documents stored. Bipsync's research does not change during
    the run, so every document marked deleted was deleted wrongly."""
    from bipsync_partner.sync.models import ResearchDocument, SyncRun

    runs = Counter(SyncRun.objects.values_list("status", flat=True).order_by())
    synced = (
        SyncRun.objects.filter(status=SyncRun.Status.SUCCEEDED)
        .values("connection_id")
        .distinct()
        .count()
    )
    return {
        "runs": dict(runs),
        "connections_synced": synced,
        "documents_stored": ResearchDocument.objects.filter(deleted_at__isnull=True).count(),
        "documents_deleted": ResearchDocument.objects.filter(deleted_at__isnull=False).count(),
    }


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "devtools.soak.settings")
    django.setup()
    if argv[:1] == ["seed"] and len(argv) == 2:
        result: Any = seed(Path(argv[1]))
    elif argv == ["verify"]:
        result = verify()
    else:
        raise SystemExit(__doc__)
    json.dump(result, sys.stdout)
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
