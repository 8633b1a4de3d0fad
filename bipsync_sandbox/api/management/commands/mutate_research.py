"""``python -m bipsync_sandbox mutate_research --tenant T --team ID --fraction F [--seed S]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bipsync_sandbox.api import generation


class Command(BaseCommand):
    help = (
        "Change a fraction of a team's research documents: 60% of the changes are edits "
        "(modified bumped), 20% deletions, the rest new documents. Deterministic with --seed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="Tenant slug.")
        parser.add_argument("--team", required=True, help="Team id (24 hex).")
        parser.add_argument("--fraction", required=True, type=float, help="0 < F <= 1.")
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--share-with", action="append", default=[], metavar="CLIENT_ID")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = generation.mutate(
                options["tenant"],
                options["team"],
                options["fraction"],
                seed=options["seed"],
                share_with=options["share_with"],
            )
        except generation.GenerationError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Edited {result.edited}, deleted {result.deleted}, created {result.created} "
            f"research documents in {result.seconds:.1f} s."
        )
