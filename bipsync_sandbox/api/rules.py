"""A small Rules engine: per-tenant rules that call a URL when research is created, changed or
deleted, with a body rendered from a Mustache template (docs/bipsync.md, "Webhooks").

Bipsync documents the rule's action (a URL, a JSON or XML body, Mustache variables such as
``{{document._id}}``) but not its event names, method, headers, signing or retries; the sandbox's
[choice]: events ``created`` / ``modified`` / ``deleted`` (``{{event}}``), POST, the rule's
content type, no signature, one attempt with ``SANDBOX_RULES_TIMEOUT_SECONDS``, no retry. Each
call is recorded (:class:`RuleCall`) for tests.

Calls never hold up the API call that changed the document: the bodies are rendered in the
request (a deleted document is gone afterwards) and handed, after the commit, to a background
thread of the worker process through a bounded queue (``SANDBOX_RULES_QUEUE_SIZE``); when it is
full, calls are dropped and logged, as a busy rules engine would lose them.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import close_old_connections, models, transaction
from django.utils import timezone

from bipsync_sandbox.api.models import object_id
from bipsync_sandbox.api.mustache import render
from bipsync_sandbox.identity.models import Tenant

log = logging.getLogger(__name__)

EVENTS = ("created", "modified", "deleted")


def _all_events() -> list[str]:
    return list(EVENTS)


class Rule(models.Model):
    """When research of the tenant is created, modified or deleted, call ``url``."""

    id = models.CharField(primary_key=True, max_length=24, default=object_id, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="rules")
    name = models.CharField(max_length=200)
    url = models.URLField(max_length=2000)
    events = ArrayField(models.CharField(max_length=16), default=_all_events)
    body_template = models.TextField()
    content_type = models.CharField(max_length=100, default="application/json")
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"rule {self.name}"


class RuleCall(models.Model):
    """One call a rule made: the status the receiver answered, or why there was none."""

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="calls")
    event = models.CharField(max_length=16)
    document_id = models.CharField(max_length=24)
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=200, blank=True)
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"call of {self.rule_id} for {self.document_id}"


# --- rendering ----------------------------------------------------------------------------------


def document_context(document: Any, content: str = "") -> dict[str, Any]:
    """The variables of a research document, in the shape Bipsync's templates name."""
    return {
        "_id": document.pk,
        "title": document.title,
        "created": {"sec": int(document.created.timestamp())},
        "modified": {"sec": int(document.modified.timestamp())},
        "user": {"_id": document.user_id},
        "type": {"_id": document.content_type_id},
        "note": {"content": content},
    }


# --- dispatch -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    rule_id: str
    url: str
    content_type: str
    body: str
    event: str
    document_id: str


_queue: queue.Queue[Delivery] | None = None
_start_lock = threading.Lock()


def _deliveries() -> queue.Queue[Delivery]:
    global _queue
    with _start_lock:
        if _queue is None:
            _queue = queue.Queue(maxsize=settings.SANDBOX_RULES_QUEUE_SIZE)
            threading.Thread(target=_send_forever, name="sandbox-rules", daemon=True).start()
        return _queue


def _send_forever() -> None:
    deliveries = _deliveries()
    with httpx.Client(timeout=float(settings.SANDBOX_RULES_TIMEOUT_SECONDS)) as http:
        while True:
            delivery = deliveries.get()
            status: int | None = None
            error = ""
            try:
                response = http.post(
                    delivery.url,
                    content=delivery.body.encode("utf-8"),
                    headers={"Content-Type": delivery.content_type},
                )
                status = response.status_code
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            try:
                close_old_connections()
                RuleCall.objects.create(
                    rule_id=delivery.rule_id,
                    event=delivery.event,
                    document_id=delivery.document_id,
                    status=status,
                    error=error,
                )
            except Exception:
                log.exception("Could not record a rule's call")


def active(tenant_id: int) -> bool:
    """Whether the tenant has any enabled rule (callers skip gathering documents otherwise)."""
    return Rule.objects.filter(tenant_id=tenant_id, enabled=True).exists()


def fire(tenant_id: int, event: str, documents: Iterable[tuple[Any, str]]) -> int:
    """Render the tenant's rules for ``event`` on each (document, note content) now, and send
    them after the commit; how many calls were queued."""
    rules = list(Rule.objects.filter(tenant_id=tenant_id, enabled=True, events__contains=[event]))
    if not rules:
        return 0
    limit = int(settings.SANDBOX_RULES_QUEUE_SIZE)
    pending: list[Delivery] = []
    for document, content in documents:
        context = {"event": event, "document": document_context(document, content)}
        for rule in rules:
            pending.append(
                Delivery(
                    rule.pk,
                    rule.url,
                    rule.content_type,
                    render(
                        rule.body_template, {**context, "rule": {"_id": rule.pk, "name": rule.name}}
                    ),
                    event,
                    document.pk,
                )
            )
        if len(pending) >= limit:
            break

    def send() -> None:
        deliveries = _deliveries()
        for delivery in pending:
            try:
                deliveries.put_nowait(delivery)
            except queue.Full:
                log.warning("Rules engine busy: a call of rule %s was dropped", delivery.rule_id)

    transaction.on_commit(send)
    return len(pending)
