"""The partner code's way to write to Bipsync: each call adds a row to the outbox.

Call these inside your own transaction: the write is committed with your change or not at all,
and its delivery is queued only after the commit. Each returns the :class:`Write`, whose
``status``, ``bipsync_id`` and ``error`` tell how delivery went.

    from bipsync_partner.writes import api as writes

    with transaction.atomic():
        report.save()
        writes.create_note(
            team,
            external_id=f"report-{report.pk}",
            title=report.title,
            content=report.html,
            author=bipsync_user_id,
            fields={"entities": [category_id]},
            attachments=[report.pdf.name],  # names in default_storage
        )

Writing the same ``external_id`` again updates that note rather than adding one. Bad input
raises :class:`WriteRefused` with a sentence, and nothing is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import transaction

from accounts.models import Team
from bipsync_partner.connections.models import Connection
from bipsync_partner.writes import files, queueing
from bipsync_partner.writes.models import Write

UPSERT_KINDS = ("category", "contact", "project")
MAX_SOURCE = 100
MAX_VALUE = 200


class WriteRefused(ValueError):
    """The write cannot be accepted as asked; the message is a sentence for people."""


def _external(source: str, value: str) -> tuple[str, str]:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_VALUE:
        raise WriteRefused(f"The external id must be 1 to {MAX_VALUE} characters of text.")
    if not source.strip() or len(source) > MAX_SOURCE:
        raise WriteRefused(f"The external id's source must be 1 to {MAX_SOURCE} characters.")
    return source, value


def _check_connection(team: Team, connection: Connection | None) -> None:
    if connection is not None and connection.team_id != team.pk:
        raise WriteRefused("The connection belongs to another team.")


def _new(team: Team, connection: Connection | None, **fields: Any) -> Write:
    write = Write.objects.create(team=team, connection=connection, **fields)
    queueing.enqueue(write.pk)
    return write


def create_note(
    team: Team,
    *,
    external_id: str,
    title: str,
    content: str = "",
    content_type: str | None = None,
    fields: dict[str, Any] | None = None,
    attachments: Sequence[str] = (),
    author: str | None = None,
    connection: Connection | None = None,
) -> Write:
    """Create (or, for an external id written before, update) a note, then its attachments.

    ``author`` is the Bipsync user the note is attributed to (``user`` [doc]); without it the
    connection's own user is used, which only a member's connection has. ``attachments`` are
    names in Django's default storage, streamed at delivery, each after the note.
    """
    source, value = _external(settings.BIPSYNC_WRITE_EXTERNAL_ID_SOURCE, external_id)
    if not isinstance(title, str) or len(title) > 500:
        raise WriteRefused("The title must be text of at most 500 characters.")
    if fields is not None and not isinstance(fields, dict):
        raise WriteRefused("fields must be a dict keyed by field apiIdentifier.")
    _check_connection(team, connection)
    measured = [_measure(name) for name in attachments]
    key = f"note:{source}:{value}"
    with transaction.atomic():
        note = _new(
            team,
            connection,
            kind=Write.Kind.NOTE,
            external_source=source,
            external_value=value,
            ordering_key=key,
            payload={
                "title": title,
                "content": content,
                "content_type": content_type,
                "fields": fields or {},
                "author": author,
            },
        )
        for facts in measured:
            _new(
                team,
                connection,
                kind=Write.Kind.ATTACHMENT,
                external_source=source,
                # Unique per attachment write, so a look-up after a lost answer finds this one.
                external_value=f"{value}#{note.pk}:{facts.name}"[:255],
                ordering_key=key,
                depends_on=note,
                payload={
                    "storage_name": facts.name,
                    "file_name": facts.name.rsplit("/", 1)[-1],
                    "size": facts.size,
                    "sha256": facts.sha256,
                    "author": author,
                },
            )
    return note


def _measure(name: str) -> files.FileFacts:
    try:
        return files.measure(name)
    except files.FileProblem as problem:
        raise WriteRefused(str(problem)) from None


def upsert(
    team: Team,
    kind: str,
    *,
    source: str,
    value: str,
    document_type: str | None = None,
    properties: dict[str, Any],
    connection: Connection | None = None,
) -> Write:
    """Upsert a category, contact or project by external id (``POST /v3/ingest`` [doc]): the
    one match is updated; with ``document_type`` one is created when none matches."""
    if kind not in UPSERT_KINDS:
        raise WriteRefused(f"kind must be one of {', '.join(UPSERT_KINDS)}.")
    source, value = _external(source, value)
    if not isinstance(properties, dict):
        raise WriteRefused("properties must be a dict.")
    _check_connection(team, connection)
    with transaction.atomic():
        return _new(
            team,
            connection,
            kind=Write.Kind.UPSERT,
            document_type=kind,
            external_source=source,
            external_value=value,
            ordering_key=f"ingest:{source}:{value}",
            payload={"document_type": document_type, "properties": properties},
        )
