"""The soak's steps that run inside a partner Django process (the soak's own settings and database).

    python -m devtools.soak.partner seed PLAN.json   -> manifest JSON on stdout
    python -m devtools.soak.partner verify           -> verification JSON on stdout

``seed`` mints grants at the sandbox (its bulk admin API) and stores each pair through the
partner's own code (``connect.store_token``: encrypted fields, events), the way a completed
Connect flow does. ``verify`` runs after the workers have stopped: it decrypts each connection's
stored refresh token and asks the sandbox whether that exact token is still the live one of its
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


def seed(plan_path: Path) -> list[dict[str, Any]]:
    """Create the partner teams and the planned connections; return the manifest (no tokens)."""
    from django.utils import timezone

    from accounts.models import Membership, Team, User
    from bipsync_partner.connections import connect
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
            if batch["kind"] == "service_account":
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
                subject, subject_name = connect.subject_of(token)
                connected = connect.store_token(
                    team=team,
                    user=user if batch["kind"] == "user" else None,
                    actor=user,
                    tenant=batch["tenant"],
                    kind=batch["kind"],
                    token=token,
                    subject=subject,
                    subject_name=subject_name,
                    target=None,
                    note="Created by the soak.",
                )
                manifest.append(
                    {
                        "connection": str(connected.connection.pk),
                        "grant": grant["grant_id"],
                        "tenant": batch["tenant"],
                        "kind": batch["kind"],
                    }
                )
    return manifest


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
                    "has_refresh_token": conn.has_refresh_token,
                }
    events = Counter(ConnectionEvent.objects.values_list("kind", flat=True).order_by())
    return {"connections": results, "events": dict(events)}


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
