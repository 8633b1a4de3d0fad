"""``python -m bipsync_sandbox generate_research --tenant T --team ID --count N [--seed S]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from bipsync_sandbox.api import generation
from bipsync_sandbox.api.models import ResearchDocument


class Command(BaseCommand):
    help = (
        "Create N realistic research documents in a team (titles, authors from the team's users, "
        "dates over three years, lookup fields), with one bulk COPY."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="Tenant slug.")
        parser.add_argument("--team", required=True, help="Team id (24 hex).")
        parser.add_argument("--count", required=True, type=int)
        parser.add_argument("--seed", type=int, default=None, help="Same seed, same documents.")
        parser.add_argument(
            "--share-with",
            action="append",
            default=[],
            metavar="CLIENT_ID",
            help="Share every non-private document with this application's service account "
            "(repeatable).",
        )
        parser.add_argument("--private-fraction", type=float, default=0.1)
        parser.add_argument(
            "--until",
            default=None,
            help="ISO-8601 moment the three years of history end at (default: now); with --seed "
            "it makes the titles and dates repeatable.",
        )

        parser.add_argument(
            "--attachments",
            type=int,
            default=0,
            help="Then attach files to this many of the team's most recent notes.",
        )
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing when the team already has documents (for repeatable demo seeding).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if (
            options["if_empty"]
            and ResearchDocument.objects.filter(team_id=options["team"]).exists()
        ):
            self.stdout.write("The team already has research documents; nothing generated.")
            return
        with tqdm(
            total=options["count"], unit="doc", desc="research", disable=options["verbosity"] < 1
        ) as bar:
            try:
                until = generation.parse_until(options["until"]) if options["until"] else None
                result = generation.generate(
                    options["tenant"],
                    options["team"],
                    options["count"],
                    seed=options["seed"],
                    share_with=options["share_with"],
                    private_fraction=options["private_fraction"],
                    until=until,
                    progress=bar.update,
                )
            except generation.GenerationError as exc:
                raise CommandError(str(exc)) from None
        self.stdout.write(f"Created {result.created} research documents in {result.seconds:.1f} s.")
        if options["attachments"] > 0:
            attached = generation.attach(
                options["tenant"], options["team"], options["attachments"], seed=options["seed"]
            )
            self.stdout.write(f"Attached {attached} files to notes.")
