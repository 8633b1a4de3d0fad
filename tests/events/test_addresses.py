"""Endpoint addresses: https only, and never a private, loopback, link-local or reserved address,
checked when an endpoint is saved and again before every send."""

from __future__ import annotations

import pytest
from pytest_django.fixtures import Settings

from accounts.models import Team
from bipsync_partner.events.addresses import AddressRefused, check
from bipsync_partner.events.models import Delivery
from bipsync_partner.events.outbox import record
from tests.events.conftest import Receiver, add_endpoint, run_due


@pytest.fixture
def strict(settings: Settings) -> Settings:
    settings.DEBUG = False
    settings.EVENTS_ALLOW_HTTP = False
    settings.EVENTS_ALLOW_PRIVATE_ADDRESSES = False
    return settings


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hooks",
        "https://localhost:8443/hooks",
        "https://10.1.2.3/hooks",
        "https://172.16.0.9/hooks",
        "https://192.168.1.1/hooks",
        "https://169.254.169.254/latest/meta-data/",
        "https://100.64.0.1/hooks",
        "https://0.0.0.0/hooks",
        "https://[::1]/hooks",
        "https://[fe80::1]/hooks",
        "https://[fd00::1]/hooks",
        "https://[::ffff:10.0.0.1]/hooks",
        "https://224.0.0.1/hooks",
        "https://240.0.0.1/hooks",
    ],
)
def test_it_refuses_an_address_on_a_private_or_reserved_network(strict: Settings, url: str) -> None:
    with pytest.raises(AddressRefused, match="private, loopback, link-local or reserved"):
        check(url)


def test_it_accepts_a_public_https_address_and_pins_what_it_checked(strict: Settings) -> None:
    target = check("https://93.184.215.14:8443/hooks?x=1")
    assert (target.url, target.host, target.host_header) == (
        "https://93.184.215.14:8443/hooks?x=1",
        "93.184.215.14",
        "93.184.215.14:8443",
    )


@pytest.mark.parametrize(
    ("url", "sentence"),
    [
        ("http://93.184.215.14/hooks", "The URL must start with https://"),
        ("ftp://93.184.215.14/hooks", "The URL must start with https://"),
        ("https://user:pw@93.184.215.14/hooks", "must not contain a user name or password"),
        ("https:///hooks", "The URL has no host name."),
        ("https://no-such-host.invalid/hooks", "does not resolve"),
    ],
)
def test_it_refuses_other_urls_with_a_sentence(strict: Settings, url: str, sentence: str) -> None:
    with pytest.raises(AddressRefused, match=sentence):
        check(url)


def test_plain_http_and_private_addresses_are_settings(strict: Settings) -> None:
    strict.EVENTS_ALLOW_HTTP = True
    strict.EVENTS_ALLOW_PRIVATE_ADDRESSES = True
    assert check("http://127.0.0.1:9/hooks").url == "http://127.0.0.1:9/hooks"


@pytest.mark.django_db(transaction=True)
def test_it_checks_again_at_send_time_and_sends_nothing_to_a_now_private_address(
    events_settings: Settings, receiver: Receiver, team: Team
) -> None:
    add_endpoint(team, receiver)  # accepted while private addresses were allowed
    record(team.pk, "write.delivered", {})
    events_settings.EVENTS_ALLOW_PRIVATE_ADDRESSES = False

    assert run_due() == ["retry"]
    row = Delivery.objects.get()
    assert "127.0.0.1 resolves to 127.0.0.1, a private" in row.last_error
    assert row.last_status_code is None
    assert receiver.seen == []
