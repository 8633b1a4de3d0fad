"""Attachments' bytes, read from Django's storage in chunks, never whole.

When a write is asked for, the file is measured (bounded by ``WRITES_ATTACHMENT_MAX_BYTES``) and
its SHA-256 computed in one streamed pass; both go in the write's payload. At delivery the bytes
stream again, counted and hashed as they go, and the last chunk is held back until both match:
a file changed in between never reaches Bipsync whole (the upload is cut short, Bipsync refuses
an incomplete body, and the write fails with a sentence).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.conf import settings
from django.core.files.storage import default_storage

CHUNK_BYTES = 1024 * 1024


class FileProblem(Exception):
    """The stored file cannot be sent; the message is a sentence for people."""


@dataclass(frozen=True)
class FileFacts:
    name: str
    size: int
    sha256: str


def _chunks(name: str) -> Iterator[bytes]:
    try:
        handle = default_storage.open(name, "rb")
    except (FileNotFoundError, OSError):
        raise FileProblem(f"The file {name!r} is not in the app's storage.") from None
    with handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk


def measure(name: str) -> FileFacts:
    """Size and SHA-256 of a stored file, refusing one over the size bound."""
    limit = settings.WRITES_ATTACHMENT_MAX_BYTES
    digest = hashlib.sha256()
    size = 0
    for chunk in _chunks(name):
        size += len(chunk)
        if size > limit:
            raise FileProblem(
                f"The file {name!r} is larger than the {limit:,} bytes an attachment may have."
            )
        digest.update(chunk)
    return FileFacts(name=name, size=size, sha256=digest.hexdigest())


def verified_stream(
    facts: FileFacts, on_progress: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    """The file's bytes, with the last chunk yielded only once size and checksum match."""
    digest = hashlib.sha256()
    size = 0
    held: bytes | None = None
    for chunk in _chunks(facts.name):
        size += len(chunk)
        if size > facts.size:
            raise FileProblem(f"The file {facts.name!r} grew after the write was asked for.")
        digest.update(chunk)
        if held is not None:
            yield held
            if on_progress is not None:
                on_progress(size)
        held = chunk
    if size != facts.size or digest.hexdigest() != facts.sha256:
        raise FileProblem(
            f"The file {facts.name!r} changed after the write was asked for "
            "(its size or SHA-256 checksum no longer matches)."
        )
    if held is not None:
        yield held
