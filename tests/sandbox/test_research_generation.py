"""Generating and mutating research documents (admin API and the commands) to drive sync tests."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.sandbox.research_api import Api, team_token
from tests.support.sandbox import REPO_ROOT, Sandbox, SandboxError, SandboxWorld


def _by_id(api: Api) -> dict[str, dict[str, Any]]:
    return {doc["id"]: doc for doc in api.all_research()}


def test_mutation_edits_deletes_and_creates_the_fraction_it_reports(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    assert sandbox.generate_research(world.tenant, world.team_id, 200, seed=7)["created"] == 200
    api = Api(world, team_token(world))
    before = _by_id(api)
    assert len(before) == 200

    counts = sandbox.mutate_research(world.tenant, world.team_id, 0.1, seed=3)
    assert (counts["edited"], counts["deleted"], counts["created"]) == (12, 4, 4)

    after = _by_id(api)
    assert len(after) == 200
    deleted = before.keys() - after.keys()
    created = after.keys() - before.keys()
    assert len(deleted) == 4
    assert len(created) == 4
    edited = [i for i in before.keys() & after.keys() if before[i] != after[i]]
    assert len(edited) == 12
    for doc_id in edited:
        old, new = before[doc_id], after[doc_id]
        assert datetime.fromisoformat(new["modified"]) > datetime.fromisoformat(old["modified"])
        assert (new["title"], new["fields"]) != (old["title"], old["fields"])
        assert new["created"] == old["created"]
    # New documents are dated now, so their ObjectId-style ids sort after every older one.
    assert sorted(after)[-4:] == sorted(created)


def test_the_same_seed_makes_the_same_documents_and_the_same_changes(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    # A second team of the same tenant (same categories) with the same two people in it.
    twin = sandbox.create_team(world.tenant, "Twin desk")["id"]
    for person, admin in ((world.admin, True), (world.member, False)):
        sandbox.create_user(world.tenant, twin, person.email, person.password, admin)
    until = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    for team in (world.team_id, twin):
        sandbox.admin(
            "POST",
            "/_sandbox/research/generate",
            {"tenant": world.tenant, "team": team, "count": 60, "seed": 9, "until": until},
        )
    api = Api(world, team_token(world))
    twin_api = Api(world, _team_token_for(world, twin))

    def content(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [
            (d["title"], d["contentType"], d["user"], d["fields"], d["created"], d["modified"])
            for d in items
        ]

    first, second = api.all_research(), twin_api.all_research()
    assert content(first) == content(second)
    assert {d["id"] for d in first}.isdisjoint(d["id"] for d in second)

    changes = [
        sandbox.mutate_research(world.tenant, team, 0.25, seed=4) for team in (world.team_id, twin)
    ]
    assert [(c["edited"], c["deleted"], c["created"]) for c in changes] == [(9, 3, 3)] * 2
    old_positions = {d["id"]: n for n, d in enumerate(first)}
    twin_positions = {d["id"]: n for n, d in enumerate(second)}
    survivors = sorted(
        old_positions[d["id"]] for d in api.all_research() if d["id"] in old_positions
    )
    twin_survivors = sorted(
        twin_positions[d["id"]] for d in twin_api.all_research() if d["id"] in twin_positions
    )
    assert survivors == twin_survivors


def _team_token_for(world: SandboxWorld, team_id: str) -> str:
    app = world.sandbox.create_application(
        "Twin export",
        grant_types=("client_credentials",),
        scopes=("rest_api:read",),
        team_id=team_id,
        tenants=(world.tenant,),
    )
    response = world.http.post(
        world.token_url,
        data={
            "grant_type": "client_credentials",
            "scope": f"rest_api:read team_{team_id}",
            "client_id": app["client_id"],
            "client_secret": app["client_secret"],
        },
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("generate", {"tenant": "no-such-tenant", "team": "0" * 24, "count": 5}),
        ("generate", {"team": "0" * 24, "count": 5}),
        ("generate", {"count": 5, "team": "0" * 24, "tenant": "{tenant}", "seed": "x"}),
        ("generate", {"tenant": "{tenant}", "team": "0" * 24, "count": 5}),
        ("generate", {"tenant": "{tenant}", "team": "{team}", "count": 0}),
        ("generate", {"tenant": "{tenant}", "team": "{team}", "count": 5, "until": "2999-01-01"}),
        ("generate", {"tenant": "{tenant}", "team": "{team}", "count": 5, "until": "soon"}),
        ("generate", {"tenant": "{tenant}", "team": "{team}", "count": 5, "share_with": ["nope"]}),
        ("generate", {"tenant": "{tenant}", "team": "{team}", "count": 5, "private_fraction": 2}),
        ("mutate", {"tenant": "{tenant}", "team": "{team}", "fraction": 0}),
        ("mutate", {"tenant": "{tenant}", "team": "{team}", "fraction": 1.5}),
        ("mutate", {"tenant": "{tenant}", "team": "{team}", "fraction": "half"}),
    ],
)
def test_it_refuses_bad_generation_arguments_with_400(
    sandbox: Sandbox, sandbox_world: SandboxWorld, path: str, body: dict[str, Any]
) -> None:
    filled = {
        key: value.format(tenant=sandbox_world.tenant, team=sandbox_world.team_id)
        if isinstance(value, str)
        else value
        for key, value in body.items()
    }
    with pytest.raises(SandboxError, match="-> 400"):
        sandbox.admin("POST", f"/_sandbox/research/{path}", filled)


def _command(sandbox: Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m bipsync_sandbox ...`` against the running sandbox's database."""
    return subprocess.run(
        [sys.executable, "-m", "bipsync_sandbox", *args],
        cwd=REPO_ROOT,
        env=sandbox.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_commands_generate_and_mutate_and_print_their_counts(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    where = ["--tenant", world.tenant, "--team", world.team_id]
    generated = _command(sandbox, "generate_research", *where, "--count", "40", "--seed", "1")
    assert generated.returncode == 0, generated.stderr
    assert "Created 40 research documents" in generated.stdout
    assert "40/40" in generated.stderr  # the progress bar
    api = Api(world, team_token(world))
    assert api.page()["total"] == 40

    mutated = _command(sandbox, "mutate_research", *where, "--fraction", "0.5", "--seed", "2")
    assert mutated.returncode == 0, mutated.stderr
    assert "Edited 12, deleted 4, created 4 research documents" in mutated.stdout
    assert api.page()["total"] == 40

    refused = _command(
        sandbox, "generate_research", "--tenant", "nope", "--team", "x", "--count", "1"
    )
    assert refused.returncode != 0
    assert "There is no tenant 'nope'" in refused.stderr


@pytest.mark.slow
def test_it_generates_100_000_documents_in_under_a_minute(
    sandbox: Sandbox, sandbox_world: SandboxWorld
) -> None:
    world = sandbox_world
    result = sandbox.generate_research(world.tenant, world.team_id, 100_000, seed=1)
    assert result["created"] == 100_000
    assert result["seconds"] < 60
    assert Api(world, team_token(world)).page(offset=99_990)["total"] == 100_000
