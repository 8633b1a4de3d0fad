"""What each kind of write sends to Bipsync (docs/bipsync.md, "Writing ... in more detail").

Each sender returns the Bipsync id of what it wrote. It is given whether an earlier attempt may
have reached Bipsync (``claim.uncertain``); only non-idempotent requests (creating a note or an
attachment's metadata) are ever at risk of running twice, and each is preceded, after such an
attempt, by a look-up of the partner's external id. Updates (PUT), the upload of bytes (PUT of
the whole file) and upserts by external id do the same thing when repeated, so the API client
retries them itself.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from django.conf import settings

from bipsync_partner.sync.api import ApiError, BipsyncApi
from bipsync_partner.writes import files
from bipsync_partner.writes.claims import Claim
from bipsync_partner.writes.models import Write

NOTE_PATH = "/v2/research/note"
#: Renew the lease after every this many bytes of an upload.
RENEW_EVERY_BYTES = 64 * 1024 * 1024


def _external_ids(write: Write) -> list[dict[str, str]]:
    return [{"source": write.external_source, "value": write.external_value}]


def _id_of(answer: Any, what: str) -> str:
    if isinstance(answer, dict) and isinstance(answer.get("id"), str) and answer["id"]:
        return str(answer["id"])
    raise ApiError(
        f"Bipsync's answer to the {what} carried no id.", code="invalid_response", transient=True
    )


# --- notes -------------------------------------------------------------------------------------


def note_body(write: Write, author: str) -> dict[str, Any]:
    payload = write.payload
    body: dict[str, Any] = {"user": author, "externalIds": _external_ids(write)}
    for name, member in (
        ("title", "title"),
        ("content", "content"),
        ("content_type", "contentType"),
    ):
        if payload.get(name) is not None:
            body[member] = payload[name]
    if payload.get("fields"):
        body["fields"] = payload["fields"]
    return body


def find_note(api: BipsyncApi, source: str, value: str) -> str | None:
    """The id of the note carrying this external id, if Bipsync has one."""
    answer = api.send(
        "GET",
        settings.BIPSYNC_NOTE_LOOKUP_PATH,
        params={
            settings.BIPSYNC_NOTE_LOOKUP_SOURCE_PARAM: source,
            settings.BIPSYNC_NOTE_LOOKUP_VALUE_PARAM: value,
        },
        idempotent=True,
    )
    results = answer.get("results") if isinstance(answer, dict) else answer
    if not isinstance(results, list):
        raise ApiError(
            "Bipsync's answer to the look-up by external id was not a list.",
            code="invalid_response",
            transient=True,
        )
    ids = sorted(str(item["id"]) for item in results if isinstance(item, dict) and item.get("id"))
    # Should an earlier bug have left two, writing to the oldest keeps the others untouched.
    return ids[0] if ids else None


def send_note(api: BipsyncApi, claim: Claim, author: str) -> str:
    write = claim.write
    body = note_body(write, author)
    # What earlier writes of the external id left (read by the claim): the note one produced,
    # or an attempt that ended without learning it.
    note_id = write.bipsync_id or claim.known_note_id
    if note_id is None and (claim.uncertain or claim.written_before):
        note_id = find_note(api, write.external_source, write.external_value)
    if note_id is not None:
        try:
            api.send(
                settings.BIPSYNC_NOTE_UPDATE_METHOD,
                f"{NOTE_PATH}/{quote(note_id, safe='')}",
                json_body=body,
                idempotent=True,
            )
            return note_id
        except ApiError as error:
            if error.status != 404:
                raise
            # The note was deleted at Bipsync since: writing it again creates it anew.
    answer = api.send("POST", NOTE_PATH, json_body=body)
    return _id_of(answer, "new note")


# --- attachments -------------------------------------------------------------------------------


def _attachments_path(note_id: str) -> str:
    return f"{NOTE_PATH}/{quote(note_id, safe='')}/attachment"


def find_attachment(api: BipsyncApi, note_id: str, write: Write) -> dict[str, Any] | None:
    answer = api.send("GET", _attachments_path(note_id), idempotent=True)
    results = answer.get("results") if isinstance(answer, dict) else answer
    for item in results if isinstance(results, list) else []:
        if isinstance(item, dict) and _external_ids(write)[0] in (item.get("externalIds") or []):
            return item
    return None


def _upload(api: BipsyncApi, claim: Claim, metadata: dict[str, Any]) -> None:
    url = metadata.get(settings.BIPSYNC_ATTACHMENT_UPLOAD_URL_MEMBER)
    if not isinstance(url, str) or not url:
        raise ApiError(
            "Bipsync's attachment answer carried no address for the bytes.",
            code="invalid_response",
            transient=True,
        )
    payload = claim.write.payload
    facts = files.FileFacts(payload["storage_name"], payload["size"], payload["sha256"])
    renewed = [0]

    def progress(sent: int) -> None:
        if sent - renewed[0] >= RENEW_EVERY_BYTES:
            renewed[0] = sent
            claim.renew()

    api_host = urlsplit(api.api_base)
    target = urlsplit(url)
    # The token goes only to the tenant's own API host; any other address (a storage service's
    # signed URL) must carry its own authorization.
    same_host = (target.scheme, target.netloc) == (api_host.scheme, api_host.netloc)
    if not same_host and target.scheme != "https":
        raise ApiError(
            "Bipsync gave an upload address that is not https; the file was not sent.",
            code="insecure_upload_address",
        )
    api.send(
        settings.BIPSYNC_ATTACHMENT_UPLOAD_METHOD,
        target.path,
        url=url,
        body=lambda: files.verified_stream(facts, progress),
        headers={"Content-Length": str(facts.size), "Content-Type": "application/octet-stream"},
        idempotent=True,
        bearer=same_host,
    )


def send_attachment(api: BipsyncApi, claim: Claim, author: str) -> str:
    write = claim.write
    note_id = write.parent_bipsync_id
    metadata = None
    if claim.uncertain or write.bipsync_id:
        metadata = find_attachment(api, note_id, write)
    if metadata is None:
        answer = api.send(
            "POST",
            _attachments_path(note_id),
            json_body={
                "fileName": write.payload["file_name"],
                "length": write.payload["size"],
                "user": author,
                "externalIds": _external_ids(write),
            },
        )
        metadata = answer if isinstance(answer, dict) else {}
        claim.update(bipsync_id=_id_of(metadata, "attachment's metadata"), step="metadata")
    attachment_id = _id_of(metadata, "attachment's metadata")
    if not metadata.get("uploaded"):
        _upload(api, claim, metadata)
    return attachment_id


# --- upserts -----------------------------------------------------------------------------------


def send_upsert(api: BipsyncApi, claim: Claim, author: str) -> str:
    write = claim.write
    body = dict(write.payload.get("properties") or {})
    if write.payload.get("document_type"):
        body["documentType"] = write.payload["document_type"]
    path = (
        f"/v3/ingest/{quote(write.external_source, safe='')}/{quote(write.external_value, safe='')}"
    )
    # One match is updated, so repeating the request after a lost answer updates what the
    # first one created instead of creating a second record [doc].
    answer = api.send("POST", path, json_body=body, idempotent=True)
    return _id_of(answer, "upsert")
