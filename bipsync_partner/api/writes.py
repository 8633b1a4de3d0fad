"""``/writes``: notes (with attachments) and upserts to Bipsync, through the outbox's Python API
(:mod:`bipsync_partner.writes.api`), and their delivery status.

Attachments come inside the JSON body as base64, at most API_NOTE_ATTACHMENTS_MAX_BYTES in all
(decoded): the whole request is then one JSON document, which the ``Idempotency-Key`` compares
whole and every generated client sends alike; multipart would need the same comparison over
parts and files. Larger files belong to the Python API, which streams them from storage. The
bytes are stored (default storage) before the note is written, under a name of their own.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import uuid
from typing import Annotated, Any

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.http import HttpRequest
from django.utils.text import get_valid_filename
from ninja import Router, Status
from ninja.params import functions as param_functions

from bipsync_partner.api.auth import READ, WRITE, Caller, caller
from bipsync_partner.api.idempotency import once, request_hash
from bipsync_partner.api.problems import Problem, bad_parameter
from bipsync_partner.api.responses import READ_ERRORS, WRITE_ERRORS
from bipsync_partner.api.schemas import AttachmentOut, NoteIn, UpsertIn, WriteOut
from bipsync_partner.connections.models import Connection
from bipsync_partner.writes import api as outbox
from bipsync_partner.writes.links import delivered_link
from bipsync_partner.writes.models import Write

router = Router(tags=["writes"])

#: The header every write requires (a 400 naming it when missing).
IdempotencyKeyHeader = Annotated[
    str, param_functions.Header(alias="Idempotency-Key", min_length=1, max_length=255)
]


def write_out(write: Write) -> WriteOut:
    attachments = [
        AttachmentOut(
            id=a.uid,
            file_name=str(a.payload.get("file_name", "")),
            status=a.status,
            error=a.error,
        )
        for a in write.dependents.filter(kind=Write.Kind.ATTACHMENT).order_by("id")
    ]
    return WriteOut(
        id=write.uid,
        kind=write.kind,
        status=write.status,
        attempts=write.attempts,
        bipsync_id=write.bipsync_id,
        error=write.error,
        link=delivered_link(write),
        created=write.created,
        finished_at=write.finished_at,
        attachments=attachments,
    )


def _connection(who: Caller, connection_id: uuid.UUID | None) -> Connection | None:
    if connection_id is None:
        return None
    found = Connection.objects.filter(team=who.team, pk=connection_id).first()
    if found is None:
        raise bad_parameter("connection_id", "body", "is not a connection of this team.")
    return found


def _decoded(body: NoteIn) -> list[tuple[str, bytes]]:
    files, total = [], 0
    for index, attachment in enumerate(body.attachments):
        try:
            data = base64.b64decode(attachment.content_base64, validate=True)
        except (binascii.Error, ValueError):
            raise bad_parameter(
                f"attachments.{index}.content_base64", "body", "is not valid base64."
            ) from None
        total += len(data)
        if total > settings.API_NOTE_ATTACHMENTS_MAX_BYTES:
            raise Problem(
                413,
                f"The attachments come to more than {settings.API_NOTE_ATTACHMENTS_MAX_BYTES} "
                "bytes, the most a note written through the API may carry.",
                kind="attachments-too-large",
            )
        # Only the last part of a path a client sent, and only safe characters.
        files.append((_file_name(attachment.file_name), data))
    return files


def _file_name(sent: str) -> str:
    """Only the last part of a path a client sent, in safe characters."""
    try:
        return get_valid_filename(posixpath.basename(sent.replace("\\", "/")))
    except SuspiciousFileOperation:
        return "attachment"


def _answer(created: bool, write: Write) -> Status[WriteOut]:
    return Status(202 if created else 200, write_out(write))


def _refused(exc: outbox.WriteRefused) -> Problem:
    return Problem(422, str(exc), kind="write-refused")


@router.post(
    "/writes/notes",
    response={200: WriteOut, 202: WriteOut, **WRITE_ERRORS},
    auth=WRITE,
    summary="Write a note",
)
def write_note(
    request: HttpRequest, body: NoteIn, idempotency_key: IdempotencyKeyHeader
) -> Status[WriteOut]:
    who = caller(request)
    digest = request_hash("note", body.model_dump(mode="json"))
    files = _decoded(body)
    conn = _connection(who, body.connection_id)
    stored: list[str] = []

    def make() -> Write:
        folder = f"api-attachments/{who.team.pk}/{uuid.uuid4().hex}"
        stored.extend(
            default_storage.save(f"{folder}/{name}", ContentFile(data)) for name, data in files
        )
        return outbox.create_note(
            who.team,
            external_id=body.external_id,
            title=body.title,
            content=body.content,
            content_type=body.content_type,
            fields=body.fields,
            attachments=stored,
            author=body.author,
            connection=conn,
        )

    try:
        created, write = once(who.team, idempotency_key, digest, make)
    except outbox.WriteRefused as exc:
        _forget(stored)
        raise _refused(exc) from None
    if not created:
        _forget(stored)
    return _answer(created, write)


def _forget(names: list[str]) -> None:
    """Files of a write that was not made (refused, or a repeat that raced the first)."""
    for name in names:
        default_storage.delete(name)


@router.post(
    "/writes/upserts",
    response={200: WriteOut, 202: WriteOut, **WRITE_ERRORS},
    auth=WRITE,
    summary="Upsert a category, contact or project",
)
def write_upsert(
    request: HttpRequest, body: UpsertIn, idempotency_key: IdempotencyKeyHeader
) -> Status[WriteOut]:
    who = caller(request)
    values: dict[str, Any] = body.model_dump(mode="json")
    conn = _connection(who, body.connection_id)

    def make() -> Write:
        return outbox.upsert(
            who.team,
            body.kind,
            source=body.source,
            value=body.value,
            document_type=body.document_type,
            properties=body.properties,
            connection=conn,
        )

    try:
        created, write = once(who.team, idempotency_key, request_hash("upsert", values), make)
    except outbox.WriteRefused as exc:
        raise _refused(exc) from None
    return _answer(created, write)


@router.get(
    "/writes/{write_id}",
    response={200: WriteOut, **READ_ERRORS},
    auth=READ,
    summary="Get a write's delivery status",
)
def get_write(request: HttpRequest, write_id: uuid.UUID) -> WriteOut:
    rows = Write.objects.filter(team=caller(request).team).select_related("connection")
    found = rows.filter(uid=write_id).first()
    if found is None:
        raise Problem(404, "No such write.")
    return write_out(found)
