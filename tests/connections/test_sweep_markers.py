"""The sweep's "queued" markers must not outlive the time a lost refresh message leaves.

A worker that dies by SIGKILL (an OOM kill, a lost node) takes its prefetched and countdown
messages with it: with late acknowledgement they come back only after the broker's visibility
timeout (an hour). Until the marker of such a connection expires, no sweep queues it again, so a
marker that lives longer than the access token lets the token lapse. Found by the soak: markers
lived 900 s while refreshes start 600 s before expiry.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Team
from bipsync_partner import coordination
from bipsync_partner.connections import sweep
from bipsync_partner.connections.models import Connection

pytestmark = pytest.mark.django_db(transaction=True)


def due_connection(team: Team, expires_in: timedelta, tenant: str) -> Connection:
    return Connection.objects.create(
        team=team,
        tenant=tenant,
        kind=Connection.Kind.CLIENT_CREDENTIALS,
        client_id="export",
        client_secret="s",
        bipsync_team_id="5f0c9a1b2c3d4e5f60718293",
        access_token="at",
        access_expires_at=timezone.now() + expires_in,
    )


def test_a_lost_refresh_message_is_queued_again_before_the_token_expires(
    team: Team, settings: Settings
) -> None:
    settings.REFRESH_ACCESS_WINDOW_SECONDS = 600
    settings.REFRESH_QUEUED_TTL_SECONDS = 900
    settings.BIPSYNC_TOKEN_LEEWAY_SECONDS = 60
    sweep_every = float(settings.CELERY_BEAT_SCHEDULE["refresh-sweep"]["schedule"])
    tenant = "t" + uuid.uuid4().hex[:10]
    long_left = due_connection(team, timedelta(seconds=590), tenant)
    short_left = due_connection(
        Team.objects.create(name="B", slug="b-" + tenant), timedelta(seconds=200), tenant
    )
    lost: list[str] = []

    result = sweep.sweep(lambda tenant, items, countdown: lost.extend(c for c, _ in items))

    assert result.queued == 2
    assert sorted(lost) == sorted([str(long_left.pk), str(short_left.pk)])
    for conn in (long_left, short_left):
        marker = sweep.marker_name(conn.pk, conn.version)
        ttl = coordination.client().ttl(marker)
        assert conn.access_expires_at is not None
        left = (conn.access_expires_at - timezone.now()).total_seconds()
        # After the marker expires, one sweep finds the connection and its task runs before
        # the token service's leeway begins.
        assert 0 < ttl <= left - 60 - 2 * sweep_every, (conn, ttl, left)


def test_markers_keep_their_configured_life_when_the_token_has_longer(
    team: Team, settings: Settings
) -> None:
    settings.REFRESH_ACCESS_WINDOW_SECONDS = 7200
    settings.REFRESH_QUEUED_TTL_SECONDS = 900
    conn = due_connection(team, timedelta(hours=1), "t" + uuid.uuid4().hex[:10])

    sweep.sweep(lambda tenant, items, countdown: None)

    ttl = coordination.client().ttl(sweep.marker_name(conn.pk, conn.version))
    assert 890 <= ttl <= 900
