"""The proactive refresh sweep and the Redis primitives around it, in this process."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import Team
from bipsync_partner.connections import sweep
from bipsync_partner.connections.models import Connection
from bipsync_partner.coordination import OnceKeys, TenantGate, TenantSemaphore

pytestmark = pytest.mark.django_db(transaction=True)


def make_due(team: Team, count: int, *, tenant: str = "acme", **fields: Any) -> list[Connection]:
    """Team-wide connections whose access token expires in five minutes (inside the window)."""
    made = []
    for _ in range(count):
        values: dict[str, Any] = {
            "team": team,
            "tenant": tenant,
            "kind": Connection.Kind.CLIENT_CREDENTIALS,
            "client_id": "export",
            "client_secret": "s",
            "bipsync_team_id": "5f0c9a1b2c3d4e5f60718293",
            "access_token": "at",
            "access_expires_at": timezone.now() + timedelta(minutes=5),
        }
        values.update(fields)
        made.append(Connection.objects.create(**values))
    return made


def test_two_sweeps_at_once_queue_each_of_many_due_connections_once(team: Team) -> None:
    due = make_due(team, 400)
    queued: list[sweep.Item] = []
    lock = threading.Lock()
    start = threading.Barrier(2)
    results: list[sweep.RefreshSweep] = []

    def enqueue(tenant: str, items: list[sweep.Item], countdown: float) -> None:
        assert tenant == "acme"
        assert 1 <= len(items) <= sweep.batch_size()
        assert 0 <= countdown <= 30
        with lock:
            queued.extend(items)

    def run() -> None:
        from django.db import connection

        start.wait()
        try:
            results.append(sweep.sweep(enqueue))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(queued) == sorted((str(c.pk), c.version) for c in due)
    assert sum(r.queued for r in results) == 400
    assert sum(r.already_queued for r in results) == 400
    # While the refreshes are queued, a third sweep queues nothing.
    assert sweep.sweep(enqueue).queued == 0


def test_a_finished_refresh_releases_its_marker_and_a_new_version_is_due_again(
    team: Team,
) -> None:
    (conn,) = make_due(team, 1)
    queued: list[sweep.Item] = []
    sweep.sweep(lambda tenant, items, countdown: queued.extend(items))
    assert queued == [(str(conn.pk), conn.version)]
    sweep.queued_markers().release([sweep.marker_name(conn.pk, conn.version)])
    Connection.objects.filter(pk=conn.pk).update(version=conn.version + 1)

    sweep.sweep(lambda tenant, items, countdown: queued.extend(items))

    assert queued[-1] == (str(conn.pk), conn.version + 1)


def test_connections_backing_off_needing_reconnect_or_far_from_expiry_are_not_due(
    team: Team,
) -> None:
    now = timezone.now()
    (backing_off,) = make_due(
        team,
        1,
        status=Connection.Status.FAILING,
        next_retry_at=now + timedelta(minutes=3),
    )
    (dead,) = make_due(team, 1, status=Connection.Status.NEEDS_RECONNECT)
    (fresh,) = make_due(team, 1, access_expires_at=now + timedelta(hours=1))
    (ageing,) = make_due(
        team,
        1,
        access_expires_at=now + timedelta(hours=1),
        refresh_expires_at=now + timedelta(days=2),
    )
    due = set(sweep.due_connections(now).values_list("pk", flat=True))
    assert due == {ageing.pk}  # its refresh token nears its end
    later = now + timedelta(minutes=4)
    assert backing_off.pk in set(sweep.due_connections(later).values_list("pk", flat=True))
    assert dead.pk not in due
    assert fresh.pk not in due


def test_jitter_spreads_refreshes_but_never_past_a_minute_before_expiry() -> None:
    now = timezone.now()
    soon = now + timedelta(seconds=75)
    assert all(0 <= sweep.jitter_for(soon, now) <= 15 for _ in range(200))
    assert sweep.jitter_for(now - timedelta(seconds=1), now) == 0
    spread = {round(sweep.jitter_for(now + timedelta(hours=1), now)) for _ in range(200)}
    assert len(spread) > 10


def test_a_queued_refresh_of_a_rotated_version_does_nothing(team: Team) -> None:
    (conn,) = make_due(team, 1)
    stale = (str(conn.pk), conn.version - 1 if conn.version else 99)
    result = sweep.refresh_batch(conn.tenant, [stale])
    assert result.outcomes == {"already_rotated": 1}
    assert result.done == [stale]


def test_a_refresh_waits_while_bipsync_asked_the_tenant_to_slow_down(team: Team) -> None:
    tenant = f"t{uuid.uuid4().hex[:10]}"
    (conn,) = make_due(team, 1, tenant=tenant)
    TenantGate(tenant).defer(20)

    result = sweep.refresh_batch(tenant, [(str(conn.pk), conn.version)])

    assert result.waited == "rate_limited_wait"
    assert result.remaining == [(str(conn.pk), conn.version)]
    assert 19 <= result.retry_in <= 23
    conn.refresh_from_db()
    assert conn.last_refreshed_at is None  # Bipsync was not called


def test_a_tenant_gate_only_ever_lengthens_and_expires_by_itself() -> None:
    gate = TenantGate(f"t{uuid.uuid4().hex[:10]}")
    assert gate.remaining() == 0
    gate.defer(5)
    gate.defer(1)  # a shorter wait seen by another worker does not shorten it
    assert 4 < gate.remaining() <= 5
    short = TenantGate(f"t{uuid.uuid4().hex[:10]}")
    short.defer(0.2)
    time.sleep(0.3)
    assert short.remaining() == 0


def test_a_tenant_semaphore_bounds_holders_and_frees_a_dead_holders_slot() -> None:
    tenant = f"t{uuid.uuid4().hex[:10]}"
    holders = [TenantSemaphore("refresh", tenant, limit=3, lease_seconds=1) for _ in range(4)]
    assert [h.acquire() for h in holders] == [True, True, True, False]
    holders[0].release()
    assert holders[3].acquire()
    time.sleep(1.1)  # the others "died" without releasing: their leases ran out
    late = TenantSemaphore("refresh", tenant, limit=3, lease_seconds=1)
    assert late.acquire()
    assert holders[3].renew() is False  # its lease expired too


def test_once_keys_are_claimed_once_until_released() -> None:
    keys = OnceKeys("test", ttl_seconds=60)
    names = [keys.name(uuid.uuid4()) for _ in range(3)]
    assert keys.claim_many(names) == [True, True, True]
    assert keys.claim_many(names) == [False, False, False]
    keys.release(names[:1])
    assert keys.claim_many(names) == [True, False, False]


def test_metrics_show_connections_by_status_and_the_oldest_due_refresh(
    team: Team, settings: Any
) -> None:
    settings.METRICS_BEARER_TOKEN = None
    make_due(team, 2)
    make_due(team, 1, status=Connection.Status.NEEDS_RECONNECT)
    # Due for ten minutes: it entered the 600 s window ten minutes ago.
    make_due(team, 1, access_expires_at=timezone.now())

    body = Client().get("/metrics").content.decode()

    families = {f.name: f for f in text_string_to_metric_families(body)}
    by_status = {s.labels["status"]: s.value for s in families["bipsync_connections"].samples}
    assert by_status["active"] == 3
    assert by_status["needs_reconnect"] == 1
    oldest = families["bipsync_refresh_oldest_due_seconds"].samples[0].value
    assert 590 <= oldest <= 700
    assert "bipsync_sync_stale_connections" in families
