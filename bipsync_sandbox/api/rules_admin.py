"""Admin API endpoints of the Rules engine (same key and conventions as the others).

| method + path | body | answer |
|---|---|---|
| GET /_sandbox/tenants/{slug}/rules | | rules |
| POST /_sandbox/tenants/{slug}/rules | url, body, name?, events? (created, modified, deleted), content_type? | the rule |
| DELETE /_sandbox/tenants/{slug}/rules/{id} | | deleted |
| GET /_sandbox/tenants/{slug}/rules/calls | | the calls made: rule, event, document_id, status, error |
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse

from bipsync_sandbox.api.rules import EVENTS, Rule, RuleCall
from bipsync_sandbox.control.admin_api import BadInput, _body, _json, _str, _tenant, admin_api

CONTENT_TYPES = ("application/json", "application/xml", "text/xml")


def rule_json(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.pk,
        "name": rule.name,
        "url": rule.url,
        "events": list(rule.events),
        "body": rule.body_template,
        "content_type": rule.content_type,
        "enabled": rule.enabled,
    }


def _events(data: dict[str, Any]) -> list[str]:
    events = data.get("events", list(EVENTS))
    if not isinstance(events, list) or not events or not set(events) <= set(EVENTS):
        raise BadInput(f"events must be a non-empty list of {', '.join(EVENTS)}.")
    return list(dict.fromkeys(events))


def _url(data: dict[str, Any]) -> str:
    url = _str(data, "url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 2000:
        raise BadInput("url must be an absolute http or https address.")
    return url


@admin_api(("GET", "POST"))
def rules_view(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = _tenant(slug)
    if request.method == "GET":
        return _json([rule_json(rule) for rule in Rule.objects.filter(tenant=tenant)])
    data = _body(request)
    content_type = _str(data, "content_type", "application/json")
    if content_type not in CONTENT_TYPES:
        raise BadInput(f"content_type must be one of {', '.join(CONTENT_TYPES)}.")
    rule = Rule.objects.create(
        tenant=tenant,
        name=_str(data, "name", "Webhook")[:200],
        url=_url(data),
        events=_events(data),
        body_template=_str(data, "body"),
        content_type=content_type,
    )
    return _json(rule_json(rule), status=201)


@admin_api(("DELETE",))
def rule_view(request: HttpRequest, slug: str, rule_id: str) -> HttpResponse:
    deleted, _ = Rule.objects.filter(tenant=_tenant(slug), pk=rule_id).delete()
    if not deleted:
        raise BadInput("No such rule.", status=404)
    return _json({"deleted": rule_id})


@admin_api(("GET",))
def rule_calls_view(request: HttpRequest, slug: str) -> HttpResponse:
    calls = RuleCall.objects.filter(rule__tenant=_tenant(slug)).order_by("id")
    return _json(
        [
            {
                "rule": call.rule_id,
                "event": call.event,
                "document_id": call.document_id,
                "status": call.status,
                "error": call.error,
            }
            for call in calls
        ]
    )
