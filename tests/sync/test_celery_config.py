"""Celery in production shape: queues, time limits, late acks, and beat's schedule."""

from __future__ import annotations

from django.conf import settings

from bipsync_partner.api.tasks import prune_idempotency_keys_task
from bipsync_partner.celery import app
from bipsync_partner.connections.tasks import refresh_batch_task, sweep_refreshes_task
from bipsync_partner.events.tasks import (
    deliver_endpoint_task,
    deliver_event_task,
    sweep_events_task,
)
from bipsync_partner.sync.tasks import (
    forget_connection_task,
    poll_new_research_task,
    refetch_documents_task,
    refresh_statistics_task,
    run_sync_task,
    sweep_due_syncs_task,
    sweep_new_research_task,
)
from bipsync_partner.writes.tasks import deliver_writes_task, sweep_writes_task


def queue_of(task_name: str) -> str:
    route = app.amqp.router.route({}, task_name)
    return str(route["queue"].name)


def test_refreshes_and_syncs_have_their_own_queues() -> None:
    assert queue_of(refresh_batch_task.name) == "refresh"
    assert queue_of(sweep_refreshes_task.name) == "refresh"
    assert queue_of(run_sync_task.name) == "sync"
    assert queue_of(sweep_due_syncs_task.name) == "default"
    assert queue_of(deliver_writes_task.name) == "writes"
    assert queue_of(sweep_writes_task.name) == "writes"
    # Not behind a long full scan on the sync queue.
    assert queue_of(sweep_new_research_task.name) == "default"
    assert queue_of(poll_new_research_task.name) == "default"
    assert queue_of(refetch_documents_task.name) == "default"
    assert queue_of(refresh_statistics_task.name) == "default"
    assert queue_of(forget_connection_task.name) == "default"
    assert queue_of(prune_idempotency_keys_task.name) == "default"


def test_tasks_ack_late_and_have_time_limits_below_the_visibility_timeout() -> None:
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert isinstance(visibility, int)
    for task in (
        refresh_batch_task,
        sweep_refreshes_task,
        run_sync_task,
        sweep_due_syncs_task,
        deliver_writes_task,
        sweep_writes_task,
        forget_connection_task,
    ):
        assert task.acks_late or settings.CELERY_TASK_ACKS_LATE
        assert task.time_limit is not None
        assert task.soft_time_limit is not None
        assert task.soft_time_limit < task.time_limit < visibility


def test_beat_fires_five_sweeps_an_hourly_prune_and_nothing_per_connection() -> None:
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert {entry["task"] for entry in schedule.values()} == {
        prune_idempotency_keys_task.name,
        sweep_refreshes_task.name,
        sweep_due_syncs_task.name,
        sweep_writes_task.name,
        sweep_events_task.name,
        sweep_new_research_task.name,
    }
    by_task = {entry["task"]: entry["schedule"] for entry in schedule.values()}
    assert by_task[sweep_refreshes_task.name] == by_task[sweep_due_syncs_task.name] == 60.0
    assert by_task[sweep_writes_task.name] == float(settings.WRITES_SWEEP_INTERVAL_SECONDS)
    assert by_task[sweep_events_task.name] == float(settings.EVENTS_SWEEP_INTERVAL_SECONDS)
    assert by_task[sweep_new_research_task.name] == float(
        settings.BIPSYNC_NEW_RESEARCH_POLL_SECONDS
    )
    assert by_task[prune_idempotency_keys_task.name] == 3600.0


def test_a_live_workers_claim_on_a_delivery_never_lapses_before_its_task_is_stopped() -> None:
    for task in (deliver_endpoint_task, deliver_event_task):
        assert task.time_limit is not None
        assert task.time_limit < settings.EVENTS_LEASE_SECONDS
        assert task.soft_time_limit is not None
        assert task.soft_time_limit > settings.EVENTS_TIMEOUT_SECONDS


def test_a_live_workers_claim_on_a_write_never_lapses_before_its_task_is_stopped() -> None:
    assert deliver_writes_task.time_limit is not None
    assert deliver_writes_task.time_limit < settings.WRITES_LEASE_SECONDS
