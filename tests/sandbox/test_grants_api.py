"""The sandbox's bulk grant API (soak and load tests): minted grants behave like grants from the
code flow, revoking a grant kills its rotated descendants too, batch introspection lines up and
counts each grant's rotations."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.sandbox import Sandbox, SandboxError, SandboxWorld


def mint(sandbox: Sandbox, client_id: str, **body: Any) -> list[dict[str, Any]]:
    answer = sandbox.admin("POST", f"/_sandbox/applications/{client_id}/grants", body)
    grants: list[dict[str, Any]] = answer["grants"]
    return grants


def introspect(sandbox: Sandbox, tokens: list[str]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = sandbox.admin(
        "POST", "/_sandbox/introspect/batch", {"tokens": tokens}
    )["results"]
    return results


def test_minted_service_account_grants_refresh_rotate_and_name_their_subject(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    app = sandbox_world.service_app
    grants = mint(
        sandbox,
        app.client_id,
        tenant=sandbox_world.tenant,
        team_id=sandbox_world.team_id,
        count=3,
        access_min=60,
        access_max=120,
    )

    assert len({g["grant_id"] for g in grants}) == 3
    assert all(60 <= g["expires_in"] <= 120 for g in grants)
    assert all(g["subject_name"].endswith("(service account)") for g in grants)
    refreshed = sandbox_world.refresh(app, grants[0]["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    new = refreshed.json()
    states = introspect(
        sandbox, [grants[0]["refresh_token"], new["refresh_token"], grants[1]["access_token"]]
    )
    assert [s["active"] for s in states] == [False, True, True]
    assert states[0]["grant_id"] == states[1]["grant_id"] == grants[0]["grant_id"]
    assert states[0]["revoke_reason"] == "rotated"
    assert states[0]["revoked_at"] is not None
    assert states[1]["revoked_at"] is None
    assert states[2]["token_type"] == "access_token"
    # A grant's rotations, counted on either of its refresh tokens; none for an access token.
    assert states[0]["grant_rotations"] == states[1]["grant_rotations"] == 1
    assert states[2]["grant_rotations"] is None
    again = sandbox_world.refresh(app, new["refresh_token"]).json()["refresh_token"]
    after = introspect(sandbox, [again, grants[1]["refresh_token"]])
    assert [s["grant_rotations"] for s in after] == [2, 0]


def test_revoking_a_grant_refuses_its_rotated_refresh_token_and_spares_the_others(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    app = sandbox_world.user_app
    first, second = mint(
        sandbox,
        app.client_id,
        tenant=sandbox_world.tenant,
        user_id=sandbox_world.member.id,
        count=2,
    )
    rotated = sandbox_world.refresh(app, first["refresh_token"]).json()["refresh_token"]

    answer = sandbox.admin("POST", "/_sandbox/grants/revoke", {"grant_ids": [first["grant_id"]]})

    assert answer["revoked"] >= 1
    refused = sandbox_world.refresh(app, rotated)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert sandbox_world.refresh(app, second["refresh_token"]).status_code == 200


def test_it_validates_bulk_requests_and_keeps_the_admin_guard(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    app = sandbox_world.service_app
    with pytest.raises(SandboxError, match="count must be"):
        mint(sandbox, app.client_id, tenant=sandbox_world.tenant, team_id="x", count=1001)
    with pytest.raises(SandboxError, match="team_id must name"):
        mint(sandbox, app.client_id, tenant=sandbox_world.tenant, team_id="0" * 24, count=1)
    with pytest.raises(SandboxError, match="must have the authorization_code"):
        mint(sandbox, sandbox_world.team_app.client_id, tenant=sandbox_world.tenant, count=1)
    with pytest.raises(SandboxError, match="UUIDs"):
        sandbox.admin("POST", "/_sandbox/grants/revoke", {"grant_ids": ["nope"]})
    assert introspect(sandbox, ["unknown", "unknown"]) == [{"active": False}] * 2
    unguarded = httpx.post(
        f"{sandbox.base_url}/_sandbox/applications/{app.client_id}/grants",
        json={"tenant": sandbox_world.tenant, "team_id": sandbox_world.team_id, "count": 1},
    )
    assert unguarded.status_code == 401
