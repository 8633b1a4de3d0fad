"""Every setting the app reads from the environment is documented in .env.example."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READ = re.compile(r'env_(?:str|int|bool|list|optional)\(\s*"([A-Z_0-9]+)"')


def documented() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^([A-Z_0-9]+)=", text, re.M))


def test_every_partner_setting_is_documented() -> None:
    read = set(READ.findall((ROOT / "bipsync_partner" / "settings.py").read_text()))
    assert read, "the settings module reads its configuration through the env helpers"
    assert read - documented() == set()
