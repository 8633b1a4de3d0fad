"""When the token service finds a connection dead, the team's admins get one email and every member
a banner; reconnecting clears both. Mail goes to Django's locmem outbox (tests' EMAIL_BACKEND)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.connections import tokens
from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.notifications import ReconnectNotice
from tests.conftest import signed_in
from tests.connections.connect_support import configure_partner, connect, new_world
from tests.support.sandbox import Sandbox, SandboxWorld

pytestmark = pytest.mark.django_db

BANNER = "needs reconnecting"


@pytest.fixture
def world(sandbox: Sandbox, settings: Settings) -> SandboxWorld:
    created = new_world(sandbox)
    configure_partner(settings, sandbox, created)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return created


def break_at_bipsync(sandbox: Sandbox, world: SandboxWorld, connection: Connection) -> None:
    """Bipsync revokes the grant; the stored access token has expired: the next use finds out."""
    sandbox.revoke_tokens(world.service_app.client_id)
    Connection.objects.filter(pk=connection.pk).update(
        access_expires_at=timezone.now() - timedelta(minutes=1)
    )


def test_a_dead_connection_emails_the_admins_once_and_shows_a_banner_until_reconnected(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User, bob: User
) -> None:
    admin = signed_in(alice)
    connect(admin, sandbox, team, world, as_user=world.admin, kind="service_account")
    connection = Connection.objects.get()
    mail.outbox.clear()
    break_at_bipsync(sandbox, world, connection)

    with pytest.raises(tokens.ReconnectRequired):
        tokens.get_access_token(connection)
    with pytest.raises(tokens.ReconnectRequired):
        tokens.get_access_token(connection)  # asked again: no second email

    assert Connection.objects.get().status == Connection.Status.NEEDS_RECONNECT
    (email,) = mail.outbox
    assert email.to == ["alice@example.com"]
    assert world.tenant in email.subject
    assert f"{sandbox.partner_url}/teams/acme/connections/{connection.pk}/" in email.body
    assert "invalid_grant" in email.body
    for client in (admin, signed_in(bob)):
        page = client.get("/teams/acme/").content.decode()
        assert BANNER in page
        assert f"/teams/acme/connections/{connection.pk}/" in page
    assert ReconnectNotice.objects.get().cleared_at is None

    connect(admin, sandbox, team, world, as_user=world.admin, kind="service_account")

    assert Connection.objects.get().status == Connection.Status.ACTIVE
    for client in (admin, signed_in(bob)):
        assert BANNER not in client.get("/teams/acme/").content.decode()
    assert ReconnectNotice.objects.get().cleared_at is not None
    assert len(mail.outbox) == 1


def test_it_emails_again_when_a_reconnected_connection_breaks_again(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User
) -> None:
    admin = signed_in(alice)
    connect(admin, sandbox, team, world, as_user=world.admin, kind="service_account")
    mail.outbox.clear()
    for _ in range(2):
        connection = Connection.objects.get()
        break_at_bipsync(sandbox, world, connection)
        with pytest.raises(tokens.ReconnectRequired):
            tokens.get_access_token(connection)
        connect(admin, sandbox, team, world, as_user=world.admin, kind="service_account")

    assert len(mail.outbox) == 2
    assert ReconnectNotice.objects.filter(cleared_at__isnull=True).count() == 0


def test_a_member_sees_no_banner_for_another_member_s_own_connection(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User, bob: User
) -> None:
    admin = signed_in(alice)
    connect(admin, sandbox, team, world, as_user=world.admin)  # alice's personal connection
    Connection.objects.update(status=Connection.Status.NEEDS_RECONNECT)

    assert BANNER in admin.get("/teams/acme/").content.decode()
    assert BANNER not in signed_in(bob).get("/teams/acme/").content.decode()


def test_an_outsider_sees_no_banner_of_the_team(
    sandbox: Sandbox, world: SandboxWorld, team: Team, alice: User, charlie: User
) -> None:
    connect(signed_in(alice), sandbox, team, world, as_user=world.admin, kind="service_account")
    Connection.objects.update(status=Connection.Status.NEEDS_RECONNECT)

    assert BANNER not in signed_in(charlie).get("/teams/globex/").content.decode()
