"""``python -m bipsync_sandbox <command>``: the sandbox's manage.py.

Always uses the sandbox's own settings, whatever DJANGO_SETTINGS_MODULE says (the partner app's
settings must never leak into the emulator). ``serve`` migrates and runs gunicorn::

    python -m bipsync_sandbox serve --port 8100 [--workers N] [--threads N]
    python -m bipsync_sandbox seed_demo
"""

from __future__ import annotations

import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.management import execute_from_command_line


def main() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "bipsync_sandbox.settings"
    try:
        execute_from_command_line([f"{sys.executable} -m bipsync_sandbox", *sys.argv[1:]])
    except ImproperlyConfigured as exc:
        # A configuration mistake deserves a sentence, not a traceback.
        sys.stderr.write(f"Bipsync sandbox: {exc}\n")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
