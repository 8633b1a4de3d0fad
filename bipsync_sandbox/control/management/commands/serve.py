"""``python -m bipsync_sandbox serve``: migrate, then run the sandbox under gunicorn."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


def default_workers() -> int:
    return max(2, (os.cpu_count() or 1) + 1)


class Command(BaseCommand):
    help = "Apply migrations, then serve the Bipsync sandbox with gunicorn (the production server)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("SANDBOX_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("SANDBOX_PORT", "8100")))
        parser.add_argument("--workers", type=int, default=default_workers())
        parser.add_argument(
            "--threads",
            type=int,
            default=4,
            help="Threads per worker (gthread); slow-fault tests hold a thread each.",
        )
        parser.add_argument("--no-migrate", action="store_true")
        parser.add_argument("--access-log", action="store_true", help="Log every request.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["no_migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "bipsync_sandbox.wsgi:application",
            "--bind",
            f"{options['host']}:{options['port']}",
            "--workers",
            str(options["workers"]),
            "--threads",
            str(options["threads"]),
            "--worker-class",
            "gthread" if options["threads"] > 1 else "sync",
            "--graceful-timeout",
            "5",
            "--timeout",
            "120",
            "--keep-alive",
            "5",
            "--name",
            "bipsync-sandbox",
        ]
        if options["access_log"]:
            argv += ["--access-logfile", "-"]
        os.environ["DJANGO_SETTINGS_MODULE"] = "bipsync_sandbox.settings"
        sys.stdout.flush()
        sys.stderr.flush()
        # Replace this process, so that signals (Ctrl-C, SIGTERM from a supervisor) reach gunicorn.
        os.execv(sys.executable, argv)
