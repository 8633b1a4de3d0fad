"""``manage.py bipsync_write``: a JSON-lines file of notes (with attachments) and upserts queued
for a team in one transaction, or, with any bad line, nothing at all and a sentence per line
(real PostgreSQL; files in a FileSystemStorage under a temporary folder)."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from accounts.models import Team
from bipsync_partner.connections.models import Connection
from bipsync_partner.writes.models import Write

pytestmark = pytest.mark.django_db

AUTHOR = "5f0c9a1b2c3d4e5f60718293"


@pytest.fixture(autouse=True)
def storage(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def jsonl(tmp_path: Path, *lines: dict[str, Any] | str) -> Path:
    path = tmp_path / "writes.jsonl"
    path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    )
    return path


def run(team: Team, path: Path) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("bipsync_write", "--team", team.slug, str(path), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def note(value: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "note",
        "external_id": value,
        "title": f"Note {value}",
        "author": AUTHOR,
        **extra,
    }


def test_it_queues_notes_attachments_and_upserts_from_a_file(team: Team, tmp_path: Path) -> None:
    default_storage.save("reports/call-1.pdf", ContentFile(b"%PDF-1.7 " + b"x" * 2000))
    path = jsonl(
        tmp_path,
        note("call-1", content="<p>Met the CFO.</p>", attachments=["reports/call-1.pdf"]),
        "",
        note("call-2"),
        {
            "kind": "upsert",
            "type": "category",
            "source": "crm",
            "value": "acme",
            "document_type": "company",
            "properties": {"name": "Acme"},
        },
    )

    out, err = run(team, path)

    assert "Queued 4 write(s) for acme from 3 line(s)" in out
    assert "queueing" in err  # the progress bar
    rows = list(Write.objects.filter(team=team).order_by("id"))
    assert [(w.kind, w.status) for w in rows] == [
        ("note", "queued"),
        ("attachment", "queued"),
        ("note", "queued"),
        ("upsert", "queued"),
    ]
    assert rows[0].external_value == "call-1"
    assert rows[0].payload["content"] == "<p>Met the CFO.</p>"
    assert rows[1].depends_on_id == rows[0].pk
    assert rows[1].payload["size"] == 2009
    assert rows[3].external_value == "acme"


def test_a_bad_line_queues_nothing_and_names_every_bad_line(team: Team, tmp_path: Path) -> None:
    path = jsonl(
        tmp_path,
        note("call-1"),
        "{not json",
        {"kind": "memo", "external_id": "x"},
        note("call-3", colour="red"),
        {"kind": "note", "external_id": "call-4"},
        note("call-5"),
    )

    with pytest.raises(CommandError, match=r"4 bad line\(s\); nothing was queued\."):
        run(team, path)

    assert not Write.objects.exists()


def test_each_bad_line_has_its_number_and_a_sentence(team: Team, tmp_path: Path) -> None:
    path = jsonl(
        tmp_path,
        "{not json",
        {"kind": "memo"},
        note("call-3", colour="red"),
        {"kind": "note", "external_id": "call-4"},
    )
    err = StringIO()

    with pytest.raises(CommandError):
        call_command("bipsync_write", "--team", team.slug, str(path), stderr=err)

    lines = err.getvalue().splitlines()
    assert any(line.startswith("line 1: this is not a JSON object") for line in lines)
    assert "line 2: kind must be note or upsert." in lines
    assert "line 3: unknown member `colour`." in lines
    assert "line 4: Object missing required field `title`." in lines


def test_a_line_the_outbox_refuses_rolls_back_the_lines_before_it(
    team: Team, other_team: Team, tmp_path: Path
) -> None:
    elsewhere = Connection.objects.create(
        team=other_team, tenant="globex", kind=Connection.Kind.SERVICE_ACCOUNT
    )
    path = jsonl(
        tmp_path,
        note("call-1"),
        note("call-2", attachments=["reports/missing.pdf"]),
        note("call-3", connection=str(elsewhere.pk)),
        note("x" * 300),
    )
    err = StringIO()

    with pytest.raises(CommandError, match=r"3 bad line\(s\)"):
        call_command("bipsync_write", "--team", team.slug, str(path), stderr=err)

    text = err.getvalue()
    assert "line 2: The file 'reports/missing.pdf' is not in the app's storage." in text
    assert f"line 3: the team has no connection {elsewhere.pk}." in text
    assert "line 4: The external id must be 1 to" in text
    assert not Write.objects.exists()  # call-1 was queued in the transaction, then rolled back


def test_an_unknown_team_or_an_empty_file_is_refused_with_a_sentence(
    team: Team, tmp_path: Path
) -> None:
    path = jsonl(tmp_path, "", "   ")
    with pytest.raises(CommandError, match="There is no team 'nope'"):
        call_command("bipsync_write", "--team", "nope", str(path))
    with pytest.raises(CommandError, match="holds no writes"):
        run(team, path)
    with pytest.raises(CommandError, match="cannot be read"):
        run(team, tmp_path / "absent.jsonl")
