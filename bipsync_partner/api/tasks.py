"""Celery tasks of the API: each calls one function and is safe to run twice.

- ``api.prune_idempotency_keys()``: beat's hourly removal of expired ``Idempotency-Key`` rows
  (queue ``default``); a second run finds none left to remove.
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from bipsync_partner.api import idempotency


@shared_task(
    name="api.prune_idempotency_keys", ignore_result=True, soft_time_limit=300, time_limit=330
)
def prune_idempotency_keys_task() -> str:
    return f"{idempotency.prune(timezone.now())} idempotency keys removed"
