"""``manage.py bipsync_write --team <slug> <file.jsonl>``: queue notes (with their attachments)
and upserts for a team from a JSON-lines file (format in :mod:`bipsync_partner.writes.jsonl`).

All or nothing: every line is read and checked first; then all of them are queued in one
transaction, in which the outbox's own checks run (files measured, sizes bounded, connections of
the team). Any bad line is reported with its number and a sentence, the transaction is rolled
back, nothing is queued and the command exits non-zero. Deliveries are queued only once the
transaction commits; the Deliveries page shows their progress.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from tqdm import tqdm

from accounts.models import Team
from bipsync_partner.connections.models import Connection
from bipsync_partner.writes import api
from bipsync_partner.writes.jsonl import LineError, NoteLine, Parsed, parse

#: Errors listed in full; the rest are counted.
SHOWN_ERRORS = 50


class Command(BaseCommand):
    help = (
        "Queue notes (with attachments) and upserts for a team from a JSON-lines file; "
        "nothing is queued unless every line is good."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", required=True, help="the team's slug")
        parser.add_argument("file", type=Path, help="a JSON-lines file, one write a line")

    def handle(self, *args: Any, **options: Any) -> None:
        team = Team.objects.filter(slug=options["team"]).first()
        if team is None:
            raise CommandError(f"There is no team {options['team']!r}.")
        path: Path = options["file"]
        self._progress = options["verbosity"] > 0
        parsed = self._read(path)
        queued = self._queue(team, parsed)
        self.stdout.write(
            self.style.SUCCESS(
                f"Queued {queued} write(s) for {team.slug} from {len(parsed)} line(s); "
                f"follow them on /teams/{team.slug}/deliveries/."
            )
        )

    def _bar(self, total: int, desc: str) -> tqdm[Any]:
        return tqdm(
            total=total, desc=desc, unit="line", file=self.stderr, disable=not self._progress
        )

    def _read(self, path: Path) -> list[Parsed]:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{path} cannot be read as UTF-8 text: {exc}.") from None
        lines = text.splitlines()
        parsed: list[Parsed] = []
        errors: list[LineError] = []
        with self._bar(len(lines), "checking") as bar:
            for result in parse(lines):
                (errors if isinstance(result, LineError) else parsed).append(result)  # type: ignore[arg-type]
                bar.update(result.number - bar.n)
            bar.update(len(lines) - bar.n)
        self._fail_on(errors)
        if not parsed:
            raise CommandError(f"{path} holds no writes.")
        return parsed

    def _queue(self, team: Team, parsed: list[Parsed]) -> int:
        connections = {c.pk: c for c in Connection.objects.filter(team=team)}
        errors: list[LineError] = []
        queued = 0
        with transaction.atomic(), self._bar(len(parsed), "queueing") as bar:
            for item in parsed:
                try:
                    queued += _queue_one(team, item, connections)
                except api.WriteRefused as refused:
                    errors.append(LineError(item.number, str(refused)))
                bar.update(1)
            if errors:
                transaction.set_rollback(True)
        self._fail_on(errors)
        return queued

    def _fail_on(self, errors: list[LineError]) -> None:
        if not errors:
            return
        for error in errors[:SHOWN_ERRORS]:
            self.stderr.write(str(error))
        more = (
            f" ({len(errors) - SHOWN_ERRORS} more not shown)" if len(errors) > SHOWN_ERRORS else ""
        )
        raise CommandError(f"{len(errors)} bad line(s){more}; nothing was queued.")


def _queue_one(team: Team, item: Parsed, connections: dict[Any, Connection]) -> int:
    """Queue one line's write(s); how many rows it added (a note and its attachments)."""
    line = item.line
    connection = None
    if line.connection is not None:
        connection = connections.get(line.connection)
        if connection is None:
            raise api.WriteRefused(f"the team has no connection {line.connection}.")
    if isinstance(line, NoteLine):
        api.create_note(
            team,
            external_id=line.external_id,
            title=line.title,
            content=line.content,
            content_type=line.content_type,
            fields=line.fields,
            attachments=line.attachments,
            author=line.author,
            connection=connection,
        )
        return 1 + len(line.attachments)
    api.upsert(
        team,
        line.type,
        source=line.source,
        value=line.value,
        document_type=line.document_type,
        properties=line.properties,
        connection=connection,
    )
    return 1
