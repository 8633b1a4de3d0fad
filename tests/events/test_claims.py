"""A claim loads its rows by hand (events/claims.py): what it gives the deliverer must be what the
ORM would have loaded, deferred fields and all."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.db.models.signals import post_init, pre_init
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Team
from bipsync_partner.events import claims, outbox
from bipsync_partner.events.models import Delivery, Event
from tests.events.conftest import Receiver, add_endpoint

pytestmark = pytest.mark.django_db(transaction=True)


def test_neither_claimed_model_has_an_init_signal_receiver() -> None:
    # The claim builds its instances without Model.__init__, which is what sends these.
    for model in (Delivery, Event):
        assert not pre_init.has_listeners(model)
        assert not post_init.has_listeners(model)


def test_a_claimed_delivery_is_the_row_the_orm_would_load(
    events_settings: Settings, receiver: Receiver, team: Team
) -> None:
    endpoint = add_endpoint(team, receiver, ["write.delivered"])
    outbox.record(team.pk, "write.delivered", {"write": {"id": "w-1", "n": [1, 2]}})

    [claimed], more, _, _ = claims.claim(endpoint, uuid.uuid4(), 10, timezone.now())

    assert more is False
    stored = Delivery.objects.select_related("event").get(pk=claimed.pk)
    assert claimed._state.adding is False
    assert claimed._state.db == stored._state.db
    for name in ("id", "event_id", "endpoint_id", "attempts", "next_attempt_at"):
        assert getattr(claimed, name) == getattr(stored, name), name
    # The event and the endpoint come with the claim: reading them asks the database nothing.
    with CaptureQueriesContext(connection) as queries:
        assert (claimed.event.pk, claimed.endpoint) == (stored.event_id, endpoint)
    assert queries.captured_queries == []
    assert claimed.event.payload == stored.event.payload
    assert claimed.event.payload["data"] == {"write": {"id": "w-1", "n": [1, 2]}}
    assert (claimed.event.uid, claimed.event.type) == (stored.event.uid, stored.event.type)
    # What the claim did not load is deferred, and loads from the row when it is read.
    assert "status" in claimed.get_deferred_fields()
    assert claimed.status == stored.status == Delivery.Status.PENDING
    assert claimed.lease_until == Delivery.objects.get(pk=claimed.pk).lease_until is not None
    # And the instance saves as a loaded one does: an UPDATE of the named field.
    claimed.attempts = 7
    claimed.save(update_fields=["attempts"])
    assert Delivery.objects.get(pk=claimed.pk).attempts == 7
