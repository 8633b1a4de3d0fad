"""``{% connection_webhook connection is_admin %}``: the connection's webhook address section.

A tag rather than a line in the connection view, so that the connections app needs no change
to show it (as the writes app shows its deliveries).
"""

from __future__ import annotations

from typing import Any

from django import template

from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.webhooks import WebhookReceiver
from bipsync_partner.sync.models import may_sync
from bipsync_partner.sync.webhook_views import BODY_TEMPLATE

register = template.Library()


@register.inclusion_tag("sync/_webhook.html")
def connection_webhook(connection: Connection, is_admin: bool) -> dict[str, Any]:
    return {
        "connection": connection,
        "is_admin": is_admin,
        "receiver": WebhookReceiver.objects.filter(connection=connection).first(),
        "syncs": may_sync(connection),
        "body_template": BODY_TEMPLATE,
    }
