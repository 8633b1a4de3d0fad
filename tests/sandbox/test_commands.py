"""The sandbox's own commands: seed_demo prints working credentials and can run again."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid

import httpx

from tests.support.sandbox import REPO_ROOT, Sandbox, authorization_url, pkce_pair, query_of


def _seed(sandbox: Sandbox, *args: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "bipsync_sandbox", "seed_demo", *args],
        cwd=REPO_ROOT,
        env={**sandbox.env, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_seed_demo_prints_credentials_that_work_and_is_idempotent(sandbox: Sandbox) -> None:
    suffix = uuid.uuid4().hex[:8]
    tenant = f"demo-{suffix}"
    args = [
        "--tenant",
        tenant,
        "--team-id",
        uuid.uuid4().hex[:24],
        "--user-client-id",
        f"user-{suffix}",
        "--service-client-id",
        f"svc-{suffix}",
        "--public-client-id",
        f"cli-{suffix}",
        "--team-client-id",
        f"team-{suffix}",
        "--redirect-uri",
        sandbox.redirect_uri,
    ]
    first = _seed(
        sandbox, *args, DEMO_ADMIN_PASSWORD="admin-pass-1", BIPSYNC_USER_CLIENT_SECRET="u" * 32
    )
    assert f"API base (issuer): {sandbox.api_base(tenant)}" in first
    team_id = re.search(r"team scope team_([0-9a-f]{24})", first)
    team_secret = re.search(rf"client_id:\s+team-{suffix}\n\s+client_secret: (\S+)", first)
    member_password = re.search(r"member: \S+  password: (\S+)", first)
    assert team_id
    assert team_secret
    assert member_password

    second = _seed(
        sandbox, *args, DEMO_ADMIN_PASSWORD="admin-pass-1", BIPSYNC_USER_CLIENT_SECRET="u" * 32
    )
    assert "(unchanged; pass one to reset it)" in second  # generated secrets are not rotated
    assert "member: member@acme.example  password: (unchanged)" in second

    token = httpx.post(
        sandbox.token_url(tenant),
        data={"grant_type": "client_credentials", "scope": f"team_{team_id.group(1)}"},
        auth=(f"team-{suffix}", team_secret.group(1)),
    )
    assert token.status_code == 200, token.text

    verifier, challenge = pkce_pair()
    url = authorization_url(
        sandbox.web_base(tenant),
        f"user-{suffix}",
        sandbox.redirect_uri,
        state="demo",
        code_challenge=challenge,
    )
    code = query_of(sandbox.authorize(url, "admin@acme.example", "admin-pass-1"))["code"]
    exchanged = httpx.post(
        sandbox.token_url(tenant),
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": sandbox.redirect_uri,
            "code_verifier": verifier,
        },
        auth=(f"user-{suffix}", "u" * 32),
    )
    assert exchanged.status_code == 200, exchanged.text
