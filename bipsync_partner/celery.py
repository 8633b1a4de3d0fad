"""The Celery app: configuration comes from Django settings prefixed CELERY_."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task
from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections

from bipsync_partner.ops import broker

# Before any broker connection: a lost Redis must not crash a worker (see ops/broker.py).
broker.install()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bipsync_partner.settings")

app = Celery("bipsync_partner")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(sender: Task[Any, Any] | None = None, **_: Any) -> None:
    """Give each task the database connection's lifecycle Django gives each request.

    Celery's Django fixup would close every connection around every task; with
    ``CELERY_DB_REUSE_MAX`` set it leaves them open, and this closes only those that are too old
    (``CONN_MAX_AGE``) or broken, and has the next query check its connection first
    (``CONN_HEALTH_CHECKS``), so that a session PostgreSQL dropped between tasks is replaced
    rather than failing the next one. A new session per task cost a backend's start and its
    first queries' catalog look-ups: 5-20 ms of a task, on the cores the tasks share
    (bench/README.md, "A worker's database connection kept from one task to the next").

    Not for a task run eagerly (``apply()``), which runs inside its caller's transaction."""
    if sender is not None and getattr(sender.request, "is_eager", False):
        return
    close_old_connections()
