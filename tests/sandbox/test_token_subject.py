"""The sandbox tells a client whom a token acts as ([choice] SANDBOX_TOKEN_RESPONSE_INCLUDES_SUBJECT)."""

from __future__ import annotations

from tests.support.sandbox import SandboxWorld


def test_a_user_token_names_the_consenting_user(sandbox_world: SandboxWorld) -> None:
    tokens = sandbox_world.connect(sandbox_world.user_app, user=sandbox_world.member)
    assert tokens["subject"] == sandbox_world.member.id
    assert tokens["subject_name"] == "Max Member"


def test_a_service_account_token_names_the_service_account_not_the_admin(
    sandbox_world: SandboxWorld,
) -> None:
    tokens = sandbox_world.connect(sandbox_world.service_app)
    assert len(tokens["subject"]) == 24
    assert tokens["subject"] != sandbox_world.admin.id
    refreshed = sandbox_world.refresh(sandbox_world.service_app, tokens["refresh_token"]).json()
    assert refreshed["subject"] == tokens["subject"]


def test_a_service_account_token_names_the_bipsync_team_it_acts_in(
    sandbox_world: SandboxWorld,
) -> None:
    tokens = sandbox_world.connect(sandbox_world.service_app)
    assert tokens["subject_team"] == sandbox_world.team_id
    assert tokens["subject_team_name"]


def test_a_user_token_names_no_team_as_a_user_may_belong_to_several(
    sandbox_world: SandboxWorld,
) -> None:
    tokens = sandbox_world.connect(sandbox_world.user_app, user=sandbox_world.member)
    assert "subject_team" not in tokens
