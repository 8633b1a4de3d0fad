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
from django.db.models import Q
from django.utils import timezone

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
    # Before the row takes its id: writes of one key then commit in id order (queueing).
    queueing.serialise_key(team.pk, fields["ordering_key"])
    write = Write.objects.create(team=team, connection=connection, **fields)
    queueing.enqueue(team.pk)
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
        for index, facts in enumerate(measured):
            _new(
                team,
                connection,
                kind=Write.Kind.ATTACHMENT,
                external_source=source,
                # Unique per attachment write, so a look-up after a lost answer finds this one.
                external_value=f"{value}#{note.pk}.{index}"[:255],
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


def cancel(write: Write) -> bool:
    """Cancel a write that has not started; False when it is being sent or has ended. The next
    write of its ordering key may then go (an attachment of a cancelled note fails)."""
    with transaction.atomic():
        cancelled = Write.objects.filter(pk=write.pk, status=Write.Status.QUEUED).update(
            status=Write.Status.CANCELLED, finished_at=timezone.now(), updated=timezone.now()
        )
        if cancelled:
            queueing.after_final(write)
    write.refresh_from_db()
    return bool(cancelled)


def send_again(write: Write) -> None:
    """Queue a failed write again (after its cause was fixed: a reconnect, a new scope). It
    keeps what it knew (a note it may have created is looked up first). Refused when a later
    write of the same external id exists, which sending this one now would overwrite."""
    if write.status != Write.Status.FAILED:
        raise WriteRefused("Only a failed write can be sent again.")
    newer = (
        Write.objects.filter(
            team_id=write.team_id, ordering_key=write.ordering_key, id__gt=write.id
        )
        .exclude(depends_on=write)
        .exists()
    )
    if newer:
        raise WriteRefused(
            "A later write of the same external id exists; sending this one again would undo it."
        )
    with transaction.atomic():
        # Its attachments, failed because it did, go again after it.
        again = Write.objects.filter(
            Q(pk=write.pk) | Q(depends_on=write), status=Write.Status.FAILED
        )
        for row in again.select_for_update():
            Write.objects.filter(pk=row.pk).update(
                status=Write.Status.QUEUED,
                next_attempt_at=timezone.now(),
                uncertain=row.uncertain or row.attempts > 0,
                attempts=0,
                finished_at=None,
                updated=timezone.now(),
            )
        queueing.enqueue(write.team_id)
    write.refresh_from_db()
