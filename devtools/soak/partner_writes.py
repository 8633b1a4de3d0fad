"""The soak's writes, inside partner Django processes (the soak's settings and database).

    python -m devtools.soak.partner_writes feed PLAN.json   (a long-running process)
    python -m devtools.soak.partner_writes verify           -> JSON on stdout

``feed`` queues notes through the product's own API (``writes.api.create_note``, one transaction
a second, every tenth note with a small attachment), through a fixed list of service-account
connections, at an even pace until its end time, faults included: a batch whose transaction
fails (the database restarting) is tried again, after looking whether it committed after all
(its commit may have succeeded with the answer lost, or its queueing failed on Redis after the
commit; the deliverer's sweep then finds those writes). It records every external id it saw
committed in ``committed.json``.

``verify`` runs once the deliveries have drained: it counts the notes per external id at the
sandbox (its admin API) and the writes per status in the outbox, and names every duplicate
(an external id with more than one note, a note with more than one copy of an attachment) and
every loss (a committed external id without a delivered write, or a delivered one without its
note at the sandbox). A write still queued because its connection needs reconnecting is not
lost: it waits, as it should, for a person to reconnect (it then goes at once). Those are
counted per connection (``waiting_for_reconnect``), and the report accepts them only on the
connections whose loss the soak excuses (revoked on purpose, or rotated in flight).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import django

#: Bytes of each soak attachment: enough for more than one upload chunk of the client.
ATTACHMENT_BYTES = 64 * 1024
ATTACH_EVERY = 10


def _sandbox() -> Any:
    from bipsync_sandbox.client import SandboxClient

    return SandboxClient(
        os.environ["SOAK_SANDBOX_URL"], os.environ["SOAK_SANDBOX_ADMIN_KEY"], timeout=120
    )


def _value(index: int) -> str:
    return f"soak-note-{index:06d}"


def _committed(values: list[str]) -> set[str]:
    from bipsync_partner.writes.models import Write

    return set(
        Write.objects.filter(kind=Write.Kind.NOTE, external_value__in=values).values_list(
            "external_value", flat=True
        )
    )


def _queue_batch(indexes: list[int], writers: list[dict[str, Any]], attachment: str) -> None:
    from django.db import transaction

    from accounts.models import Team
    from bipsync_partner.connections.models import Connection
    from bipsync_partner.writes import api

    with transaction.atomic():
        for index in indexes:
            writer = writers[index % len(writers)]
            connection = Connection.objects.get(pk=writer["connection"])
            api.create_note(
                Team.objects.get(pk=connection.team_id),
                external_id=_value(index),
                title=f"Soak note {index}",
                content=f"<p>Written by the soak, number {index}.</p>",
                author=writer["author"],
                connection=connection,
                attachments=[attachment] if index % ATTACH_EVERY == ATTACH_EVERY - 1 else [],
            )


def feed(plan_path: Path) -> None:
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.db import DatabaseError, close_old_connections, connection

    plan = json.loads(plan_path.read_text())
    writers: list[dict[str, Any]] = plan["writers"]
    total: int = plan["writes"]
    until: float = plan["until"]
    out = Path(plan["committed_path"])
    attachment = "soak/attachment.bin"
    if not default_storage.exists(attachment):
        default_storage.save(attachment, ContentFile(os.urandom(ATTACHMENT_BYTES)))
    started = time.time()
    per_second = total / max(1.0, until - started)
    committed: set[str] = set()
    next_index = 0
    while next_index < total:
        due = min(total, int((time.time() - started + 1) * per_second))
        indexes = list(range(next_index, max(due, next_index + 1)))
        values = [_value(i) for i in indexes]
        try:
            _queue_batch(indexes, writers, attachment)
        except Exception as exc:  # a database or broker outage: see what committed
            print(f"feed: batch {indexes[0]}-{indexes[-1]} raised {type(exc).__name__}: {exc}")
            close_old_connections()
            connection.close()
            try:
                found = _committed(values)
            except DatabaseError:
                time.sleep(1)
                continue  # the database is down; try the same batch again
            if len(found) != len(values):
                time.sleep(1)
                continue  # rolled back: try the same batch again
        committed.update(values)
        next_index = indexes[-1] + 1
        out.write_text(json.dumps(sorted(committed)))
        time.sleep(max(0.0, 1.0 - (time.time() % 1.0)))
    print(f"feed: done, {len(committed)} notes committed")


def verify(committed_path: Path) -> dict[str, Any]:
    from django.conf import settings

    from bipsync_partner.connections.models import Connection
    from bipsync_partner.writes.models import Write

    committed = set(json.loads(committed_path.read_text())) if committed_path.exists() else set()
    source = settings.BIPSYNC_WRITE_EXTERNAL_ID_SOURCE
    fields = ("status", "connection_id", "connection__status", "connection__tenant")
    notes = list(
        Write.objects.filter(kind=Write.Kind.NOTE).values(
            "external_value", "error", "attempts", *fields
        )
    )
    attachments = list(
        Write.objects.filter(kind=Write.Kind.ATTACHMENT).values(
            "depends_on__external_value", *fields
        )
    )

    def waits(write: dict[str, Any]) -> bool:
        # As devtools.soak.writes.PENDING_SQL leaves out of the drain.
        return bool(
            write["status"] == Write.Status.QUEUED
            and write["connection__status"] == Connection.Status.NEEDS_RECONNECT
        )

    waiting = Counter(str(w["connection_id"]) for w in notes + attachments if waits(w))
    waiting_notes = {n["external_value"] for n in notes if waits(n)}
    tenants = sorted({n["connection__tenant"] for n in notes if n["connection__tenant"]})
    at_sandbox: dict[str, int] = {}
    attached: dict[str, int] = {}
    with _sandbox() as sandbox:
        for tenant in tenants:
            at_sandbox.update(sandbox.note_counts(tenant, source))
        for item in attachments:
            value = item["depends_on__external_value"]
            stored = sandbox.notes_by_external_id(item["connection__tenant"], source, value)
            attached[value] = sum(len(note["attachments"]) for note in stored)
    delivered = {n["external_value"] for n in notes if n["status"] == Write.Status.DELIVERED}
    in_outbox = {n["external_value"] for n in notes}
    duplicates = {v: c for v, c in at_sandbox.items() if c > 1}
    duplicate_attachments = {v: c for v, c in attached.items() if c > 1}
    lost = sorted(
        (committed - in_outbox)  # committed, yet not in the outbox
        | (in_outbox - delivered - waiting_notes)  # never delivered, and not waiting
        | {v for v in delivered if at_sandbox.get(v, 0) == 0}  # delivered, not at Bipsync
    )
    lost_attachments = sorted(
        a["depends_on__external_value"]
        for a in attachments
        if (a["status"] != Write.Status.DELIVERED and not waits(a))
        or (
            a["status"] == Write.Status.DELIVERED
            and attached.get(a["depends_on__external_value"]) == 0
        )
    )
    return {
        "committed_by_feed": len(committed),
        "notes_in_outbox": len(in_outbox),
        "writes_by_status": dict(
            Counter(Write.objects.values_list("status", flat=True).order_by())
        ),
        "notes_delivered": len(delivered),
        "notes_waiting_for_reconnect": len(waiting_notes),
        "attachments_waiting_for_reconnect": sum(1 for a in attachments if waits(a)),
        # Writes (notes and attachments) per connection that needs reconnecting.
        "waiting_for_reconnect": dict(waiting),
        "notes_at_sandbox": sum(at_sandbox.values()),
        "attachments": len(attachments),
        "attachments_at_sandbox": sum(attached.values()),
        "attempts_max": max((n["attempts"] for n in notes), default=0),
        "duplicates": len(duplicates) + len(duplicate_attachments),
        "duplicate_examples": dict(list({**duplicates, **duplicate_attachments}.items())[:20]),
        "lost": len(lost) + len(lost_attachments),
        "lost_examples": (lost + lost_attachments)[:20],
        "not_delivered_examples": [
            {"external_value": n["external_value"], "status": n["status"], "error": n["error"]}
            for n in notes
            if n["status"] != Write.Status.DELIVERED
        ][:10],
    }


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "devtools.soak.settings")
    django.setup()
    if argv[:1] == ["feed"] and len(argv) == 2:
        feed(Path(argv[1]))
        return
    if argv[:1] == ["verify"] and len(argv) == 2:
        json.dump(verify(Path(argv[1])), sys.stdout)
        sys.stdout.flush()
        return
    raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
