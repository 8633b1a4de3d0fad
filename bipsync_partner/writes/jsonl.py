"""Writes described one per line of a JSON-lines file, for operators (``manage.py bipsync_write``).

Each line is one JSON object with a ``kind``; the other members are the arguments of
:func:`bipsync_partner.writes.api.create_note` and :func:`~bipsync_partner.writes.api.upsert`::

    {"kind": "note", "external_id": "call-1", "title": "Call", "content": "<p>…</p>",
     "author": "<24-hex user id>", "attachments": ["reports/call-1.pdf"]}
    {"kind": "upsert", "type": "category", "source": "crm", "value": "acme",
     "document_type": "company", "properties": {"name": "Acme"}}

Attachments go with their note (names in the app's storage, streamed at delivery). ``connection``
(a connection's id) picks the connection that writes it; without it the deliverer picks.

This module only reads lines into typed writes, with a sentence for each one that is not.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

import msgspec


class NoteLine(msgspec.Struct, tag_field="kind", tag="note", forbid_unknown_fields=True):
    external_id: str
    title: str
    content: str = ""
    content_type: str | None = None
    fields: dict[str, Any] | None = None
    attachments: list[str] = []
    author: str | None = None
    connection: UUID | None = None


class UpsertLine(msgspec.Struct, tag_field="kind", tag="upsert", forbid_unknown_fields=True):
    type: str
    source: str
    value: str
    properties: dict[str, Any]
    document_type: str | None = None
    connection: UUID | None = None


Line = NoteLine | UpsertLine
_decoder: Final = msgspec.json.Decoder(Line)


@dataclass(frozen=True)
class Parsed:
    number: int
    line: Line


@dataclass(frozen=True)
class LineError:
    number: int
    sentence: str

    def __str__(self) -> str:
        return f"line {self.number}: {self.sentence}"


def _sentence(exc: msgspec.ValidationError | msgspec.DecodeError) -> str:
    text = str(exc)
    if not isinstance(exc, msgspec.ValidationError):  # a ValidationError is a DecodeError too
        return f"this is not a JSON object ({text})."
    if "`$.kind`" in text or "missing required field `kind`" in text:
        return "kind must be note or upsert."
    if text.startswith("Object contains unknown field"):
        return text.replace("Object contains unknown field", "unknown member") + "."
    return f"{text}."


def parse(lines: Iterable[str]) -> Iterator[Parsed | LineError]:
    """Each non-blank line as a write, or the sentence saying why it is not one."""
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            yield Parsed(number, _decoder.decode(text))
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            yield LineError(number, _sentence(exc))
