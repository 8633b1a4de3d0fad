"""Acceptance: a reconnect starts a catch-up sync at once, whatever the schedule says, and a real
Celery worker (on Redis and the test database) runs it against the sandbox over HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.connections.models import Connection
from bipsync_partner.sync.connection_hooks import CATCH_UP_NOTE
from bipsync_partner.sync.models import DocumentSighting, SyncRun, SyncSchedule
from tests.conftest import signed_in
from tests.connections.connect_support import configure_partner, connect
from tests.support.sandbox import Sandbox
from tests.sync.conftest import SyncWorld, Worker, machine_connection, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def finished(run: SyncRun, timeout: float = 120) -> SyncRun:
    def done() -> bool:
        run.refresh_from_db()
        return run.is_finished

    wait_for(done, timeout=timeout, what=f"sync run {run.pk} to finish")
    return run


def test_reconnecting_a_machine_connection_syncs_at_once_and_the_old_error_goes(
    worker_settings: Settings,
    celery_worker: Worker,
    sandbox: Sandbox,
    sync_world: SyncWorld,
    team: Team,
    alice: User,
) -> None:
    sandbox.generate_research(sync_world.tenant, sync_world.team_id, 40, seed=31)
    broken = machine_connection(
        team,
        sync_world,
        client_secret="the-secret-before-rotation",
        status=Connection.Status.NEEDS_RECONNECT,
        last_error_code="invalid_client",
        last_error_message="Bipsync refused the machine connection's credentials.",
    )
    # Not due for a day: only the reconnect can start this run.
    SyncSchedule.objects.create(connection=broken, next_due_at=timezone.now() + timedelta(days=1))
    client = signed_in(alice)

    response = client.post(
        f"/teams/{team.slug}/connections/{broken.pk}/machine/",
        {
            "client_secret": sync_world.machine_app.client_secret,
            "scopes": "rest_api:read rest_api:fields:read",
        },
    )

    assert response.status_code == 302
    run = SyncRun.objects.get(connection=broken)
    assert CATCH_UP_NOTE in run.notes
    assert run.requested_by == alice
    assert finished(run).status == SyncRun.Status.SUCCEEDED, run.error_message
    seen = DocumentSighting.objects.filter(connection=broken, document__deleted_at__isnull=True)
    assert seen.count() == 40
    page = client.get(f"/teams/{team.slug}/connections/{broken.pk}/").content.decode()
    assert '<span class="status active">Active</span>' in page
    assert "Bipsync refused the machine connection" not in page


def test_reconnecting_the_service_account_in_the_browser_flow_queues_a_catch_up_sync(
    worker_settings: Settings,
    celery_worker: Worker,
    sandbox: Sandbox,
    sync_world: SyncWorld,
    team: Team,
    alice: User,
) -> None:
    configure_partner(worker_settings, sandbox, sync_world.world)
    client = signed_in(alice)
    world = sync_world.world
    connect(client, sandbox, team, world, as_user=world.admin, kind="service_account")
    connection = Connection.objects.get(kind=Connection.Kind.SERVICE_ACCOUNT)
    assert not SyncRun.objects.filter(connection=connection).exists()  # a first connect: the sweep

    connect(client, sandbox, team, world, as_user=world.admin, kind="service_account")

    run = SyncRun.objects.get(connection=connection)
    assert CATCH_UP_NOTE in run.notes
    assert finished(run).status == SyncRun.Status.SUCCEEDED, run.error_message


def test_a_reconnect_of_a_connection_that_may_not_sync_queues_nothing(
    worker_settings: Settings,
    sandbox: Sandbox,
    sync_world: SyncWorld,
    team: Team,
    bob: User,
) -> None:
    configure_partner(worker_settings, sandbox, sync_world.world)
    client = signed_in(bob)
    world = sync_world.world
    # Members' own connections do not sync unless the team turns it on.
    connect(client, sandbox, team, world, as_user=world.member)
    connect(client, sandbox, team, world, as_user=world.member)

    assert Connection.objects.get().status == Connection.Status.ACTIVE
    assert not SyncRun.objects.exists()
