"""Package-level promises: no Django anywhere in the OAuth core, a stable export list, and a
User-Agent version that matches the project's."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import bipsync_partner.oauth as oauth
from bipsync_partner.oauth.version import __version__

ROOT = Path(__file__).resolve().parents[2]

# Imports every module of the package in a fresh interpreter (this test process has Django loaded
# by pytest-django, so the check must run elsewhere) and fails if any of them pulled Django in.
_PROBE = """
import importlib, json, pkgutil, sys
import bipsync_partner.oauth as package
names = [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
for name in names:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m == "django" or m.startswith("django."))
print(json.dumps({"modules": names, "django": loaded}))
"""


def test_no_module_of_the_oauth_core_imports_django() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert "bipsync_partner.oauth.grants" in report["modules"]  # every module was really imported
    assert len(report["modules"]) >= 12
    assert report["django"] == []


def test_every_exported_name_exists() -> None:
    for name in oauth.__all__:
        assert hasattr(oauth, name), name


def test_the_user_agent_version_matches_the_project_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert __version__ == project["version"]
