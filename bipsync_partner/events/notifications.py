"""Telling a team's admins that events stopped reaching one of their endpoints."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

from bipsync_partner.events.models import Delivery, Endpoint


def _log_url(endpoint: Endpoint) -> str:
    path = reverse("events:endpoint", args=[endpoint.team.slug, endpoint.pk])
    return f"{settings.SITE_URL}{path}"


def _send(endpoint: Endpoint, subject: str, body: str) -> None:
    recipients = list(endpoint.team.admins().values_list("email", flat=True))
    if recipients:
        send_mail(subject, body, None, recipients)


def delivery_failed(delivery_id: int) -> None:
    """The notice of a delivery that failed for good, from what was stored of it."""
    delivery = Delivery.objects.select_related("event", "endpoint__team").get(id=delivery_id)
    endpoint = delivery.endpoint
    _send(
        endpoint,
        f"A {delivery.event.type} event could not be delivered to {endpoint.url}",
        f"The event {delivery.event.uid} ({delivery.event.type}) of {endpoint.team} was not "
        f"accepted by {endpoint.url} after {delivery.attempts} attempts.\n\n"
        f"Last answer: {delivery.last_error or 'none'}\n\n"
        f"Replay it from the delivery log once the endpoint works: {_log_url(endpoint)}\n",
    )


def endpoint_disabled(endpoint: Endpoint, failed: int) -> None:
    _send(
        endpoint,
        f"Webhook endpoint {endpoint.url} was disabled",
        f"Every delivery to {endpoint.url} of {endpoint.team} has failed since "
        f"{endpoint.failing_since:%Y-%m-%d %H:%M} UTC, so it was disabled; {failed} "
        f"event{'s' if failed != 1 else ''} were not delivered.\n\n"
        f"Fix the endpoint, enable it and replay the events from its delivery log: "
        f"{_log_url(endpoint)}\n",
    )
