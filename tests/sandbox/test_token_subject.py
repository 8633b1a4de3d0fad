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
