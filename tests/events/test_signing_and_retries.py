"""Deliveries over real HTTP to a real receiving server, attempted in this process (the worker's
own behaviour is in test_worker_delivery.py): signatures, secret rotation, back-off, Retry-After,
and the end of the retry period."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone
from pytest_django.fixtures import Settings
from standardwebhooks import Webhook

from accounts.models import Team, User
from bipsync_partner.events import delivery, outbox
from bipsync_partner.events.models import Delivery, Event
from tests.events.conftest import Receiver, add_endpoint, run_due

pytestmark = pytest.mark.django_db(transaction=True)


def one_event(team: Team, type: str = "write.delivered") -> Event:
    with transaction.atomic():
        event = outbox.record(team.pk, type, {"write": {"id": "w-1"}})
    assert event is not None
    return event


def test_a_delivery_is_signed_so_that_the_receiver_verifies_it_with_its_secret(
    events_settings: Settings, receiver: Receiver, team: Team
) -> None:
    endpoint = add_endpoint(team, receiver)
    event = one_event(team)

    assert run_due() == ["delivered"], list(
        Delivery.objects.values("last_error", "last_status_code")
    )
    [seen] = receiver.seen
    assert seen.status == 204
    assert seen.webhook_id == event.uid
    assert seen.body == {
        "type": "write.delivered",
        "timestamp": event.payload["timestamp"],
        "data": {"write": {"id": "w-1"}},
    }
    # The library's own verification, with the endpoint's secret, and refused with another.
    raw = receiver.seen[0]
    assert Webhook(str(endpoint.secret)).verify(raw.raw, raw.headers)["data"] == {
        "write": {"id": "w-1"}
    }
    assert not receiver.verified(raw.raw, {**raw.headers, "webhook-id": "evt_x"})
    assert not receiver.verified(raw.raw.replace(b"w-1", b"w-2"), raw.headers)
    row = Delivery.objects.get(event=event)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 1, 204)
    assert row.last_duration_ms is not None


def test_after_a_rotation_both_secrets_verify_until_the_overlap_ends(
    events_settings: Settings, receiver: Receiver, team: Team
) -> None:
    endpoint = add_endpoint(team, receiver)
    old = str(endpoint.secret)
    new = endpoint.rotate_secret(timezone.now())
    receiver.secrets = [new]
    one_event(team)

    run_due()
    [during] = receiver.seen
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(during.raw, during.headers)
    Webhook(new).verify(during.raw, during.headers)

    # The overlap over: only the new secret signs.
    endpoint.refresh_from_db()
    endpoint.previous_secret_until = timezone.now() - timedelta(seconds=1)
    endpoint.save(update_fields=["previous_secret_until"])
    event = one_event(team)
    run_due()
    after = receiver.seen[-1]
    assert after.webhook_id == event.uid
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    Webhook(new).verify(after.raw, after.headers)
    receiver.secrets = [old]
    assert not receiver.verified(after.raw, after.headers)


def test_a_429_waits_for_its_retry_after_and_the_retry_keeps_the_webhook_id(
    events_settings: Settings, receiver: Receiver, team: Team
) -> None:
    add_endpoint(team, receiver)
    receiver.behaviour.rate_limit_every = 1_000_000  # the first request only
    event = one_event(team)

    assert run_due() == ["retry"]
    row = Delivery.objects.get(event=event)
    assert row.last_status_code == 429
    # Retry-After: 1 is longer than the back-off (0.05-0.1 s): it wins.
    assert row.next_attempt_at >= row.last_attempt_at + timedelta(seconds=1)  # type: ignore[operator]
    assert run_due() == ["not due"]
    time.sleep(1.1)
    assert run_due() == ["delivered"]
    assert [seen.webhook_id for seen in receiver.seen] == [event.uid, event.uid]
    assert [seen.status for seen in receiver.seen] == [429, 204]


def test_an_endpoint_failing_for_the_whole_retry_period_is_disabled_and_its_admins_emailed(
    events_settings: Settings, receiver: Receiver, team: Team, alice: User, bob: User
) -> None:
    events_settings.EVENTS_RETRY_PERIOD_SECONDS = 1
    endpoint = add_endpoint(team, receiver)
    receiver.behaviour.status = 503
    first = one_event(team)

    outcomes: list[str] = []
    deadline = time.monotonic() + 10
    while not Delivery.objects.filter(event=first, status="failed").exists():
        assert time.monotonic() < deadline, outcomes
        outcomes += run_due()
        time.sleep(0.05)
    assert outcomes.count("retry") >= 2
    assert outcomes[-1] == "failed"

    row = Delivery.objects.get(event=first)
    assert row.attempts >= 3
    assert row.last_error == "The endpoint answered 503."
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert "every delivery had failed" in endpoint.disabled_reason
    [email] = mail.outbox
    assert email.to == [alice.email]  # the admins only, not bob
    assert "was disabled" in email.subject
    assert str(endpoint.secret) not in email.body
    # A disabled endpoint gets nothing new.
    assert outbox.record(team.pk, "write.delivered", {}) is None


def test_a_failed_delivery_emails_the_admins_while_the_endpoint_still_works_otherwise(
    events_settings: Settings, receiver: Receiver, team: Team, alice: User
) -> None:
    events_settings.EVENTS_RETRY_PERIOD_SECONDS = 1
    events_settings.EVENTS_DELIVERY_BATCH = 1  # each delivery attempted on its own here
    endpoint = add_endpoint(team, receiver)
    receiver.behaviour.status = 400
    refused = one_event(team)
    [refused_delivery] = Delivery.objects.filter(event=refused).values_list("id", flat=True)
    assert delivery.deliver(refused_delivery) == "retry"
    # Another event gets through meanwhile: the endpoint is not failing as a whole.
    receiver.behaviour.status = None
    accepted = one_event(team)
    assert delivery.deliver(Delivery.objects.get(event=accepted).pk) == "delivered"

    receiver.behaviour.status = 400
    time.sleep(1.1)
    assert delivery.deliver(refused_delivery) == "failed"

    endpoint.refresh_from_db()
    assert endpoint.enabled
    [email] = mail.outbox
    assert email.to == [alice.email]
    assert email.subject == f"A write.delivered event could not be delivered to {endpoint.url}"
    assert refused.uid in email.body
    assert "The endpoint answered 400." in email.body


def test_replay_sends_the_same_webhook_id_again(
    events_settings: Settings, receiver: Receiver, team: Team
) -> None:
    add_endpoint(team, receiver)
    event = one_event(team)
    run_due()
    row = Delivery.objects.get(event=event)
    with transaction.atomic():
        delivery.replay(row)
    assert run_due() == ["delivered"]
    assert [seen.webhook_id for seen in receiver.seen] == [event.uid, event.uid]
    assert receiver.repeats[event.uid] == 1
    assert Delivery.objects.get(event=event).attempts == 2
