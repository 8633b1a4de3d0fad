"""Delivering one event to one endpoint: claim it, sign it, POST it, record the outcome.

- A 2xx answer delivers it.
- Anything else (a 5xx, 429, another 4xx or 3xx, a timeout, a refused connection, an address
  that now resolves to a private network) is tried again with exponential back-off and jitter,
  never sooner than a 429's ``Retry-After``, until ``EVENTS_RETRY_PERIOD_SECONDS`` after the
  first attempt; then the delivery fails and the team's admins are emailed. An endpoint whose
  deliveries have all failed for that whole period is disabled (its admins told once).

Every attempt carries the event's own ``webhook-id``, so a receiver that saw an attempt whose
answer was lost recognises the retry. A claim with a lease fences the outcome: a worker that lost
its claim (killed, or outlived the lease) records nothing.
"""

from __future__ import annotations

import contextlib
import email.utils
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from django.conf import settings
from django.db import connection as db
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from bipsync_partner.coordination import OnceKeys
from bipsync_partner.events import addresses, claims, notifications, outbox
from bipsync_partner.events.models import Delivery, Endpoint
from bipsync_partner.events.signing import signed_headers


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    error: str
    duration_ms: int
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def retry_period() -> timedelta:
    return timedelta(seconds=settings.EVENTS_RETRY_PERIOD_SECONDS)


def backoff(attempts: int) -> float:
    """Uniform in [ceiling/2, ceiling], ceiling = base·2^(n-1) capped: the jitter spreads the
    retries of many events that failed together."""
    base = settings.EVENTS_BACKOFF_BASE_MS / 1000.0
    cap = settings.EVENTS_BACKOFF_CAP_MS / 1000.0
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    return random.uniform(ceiling / 2, ceiling)


#: The task's soft time limit (tasks.py): a run starts no send that could outlast it.
TASK_SOFT_LIMIT_SECONDS = 50


def deliver_due(endpoint_id: uuid.UUID | str, *, call_in: bool = True) -> str:
    """A run of the endpoint's deliverer: claim a batch of its due deliveries at a time and
    attempt them, until none is left or the task's time is nearly up.

    A burst spreads over the workers: when a run's first claim leaves more due than its batch,
    it queues the runs that can share them at once (up to ``EVENTS_DELIVERY_RUNS`` in all; a run
    so called in, ``call_in`` False, calls in no others), and a later claim that leaves more
    queues one (at most one waits per endpoint otherwise,
    :mod:`~bipsync_partner.events.outbox`). Batches are sized to the endpoint's pace
    (:func:`_next_batch_size`): a fast endpoint's burst costs a few statements per hundred
    events, and a slow one's is shared between workers rather than held by one. While runs
    share a burst, each claim takes at most its share of what is left (:func:`claims.claim`),
    so that the runs finish together."""
    outbox.started(endpoint_id)
    started = time.monotonic()
    attempted = 0
    size = min(FIRST_BATCH, settings.EVENTS_DELIVERY_BATCH)
    runs = settings.EVENTS_DELIVERY_RUNS
    claimed = claims.Claimed.nothing()
    with _asynchronous_commits():
        while True:
            if time.monotonic() - started > _budget():
                outbox.enqueue(endpoint_id)
                break
            token = uuid.uuid4()
            claimed = claims.claim(
                endpoint_id,
                token,
                size,
                timezone.now(),
                known=claimed.endpoint,
                known_version=claimed.endpoint_version,
                look_ahead=_look_ahead(),
                smallest_share=LAST_SHARE,
            )
            if not claimed.batch:
                break
            if claimed.more and call_in and attempted == 0:
                joining = min(runs - 1, -(-claimed.free_besides // size))
                outbox.enqueue(endpoint_id, joining=max(1, joining))
            elif claimed.more:
                outbox.enqueue(endpoint_id)
            batch_started = time.monotonic()
            outcomes = _attempt(claimed.batch, token, started)
            attempted += len(outcomes)
            if len(outcomes) < len(claimed.batch):
                break  # out of time (the rest released and queued) or the endpoint disabled
            size = _next_batch_size(time.monotonic() - batch_started, len(outcomes))
    return f"{attempted} deliveries attempted"


#: A run's first batch, before it knows the endpoint's pace.
FIRST_BATCH = 25
#: The smallest batch a run takes as its share of a burst's end: smaller ones would cost more
#: statements than the runs' uneven ends cost time.
LAST_SHARE = 10


def _look_ahead() -> int:
    # What the other runs hold (the oldest due) and then a full batch for every run: enough to
    # tell a run its share of a burst's end, and no more is read.
    return 2 * settings.EVENTS_DELIVERY_RUNS * settings.EVENTS_DELIVERY_BATCH


def _next_batch_size(seconds: float, attempted: int) -> int:
    """As many deliveries as take ``EVENTS_DELIVERY_BATCH_MS`` at the pace of the last batch,
    from 1 to ``EVENTS_DELIVERY_BATCH`` (the claim may take fewer: its share of a burst's end)."""
    most = settings.EVENTS_DELIVERY_BATCH
    each = seconds / max(1, attempted)
    if each <= 0:
        return most
    return max(1, min(most, int(settings.EVENTS_DELIVERY_BATCH_MS / 1000 / each)))


def deliver(delivery_id: int) -> str:
    """Attempt the delivery if it is due and nobody holds it, and with it up to
    ``EVENTS_DELIVERY_BATCH`` - 1 other due deliveries of the same endpoint; a word saying what
    happened to the named one."""
    endpoint_id = (
        Delivery.objects.filter(id=delivery_id).values_list("endpoint_id", flat=True).first()
    )
    if endpoint_id is None:
        return "not due"
    token = uuid.uuid4()
    with _asynchronous_commits():
        batch = claims.claim(
            endpoint_id, token, settings.EVENTS_DELIVERY_BATCH, timezone.now(), first=delivery_id
        ).batch
        if not batch:
            return "not due"
        outcomes = _attempt(batch, token, time.monotonic())
    return outcomes.get(delivery_id, f"{len(outcomes)} of its endpoint's deliveries attempted")


def _budget() -> float:
    return TASK_SOFT_LIMIT_SECONDS - settings.EVENTS_TIMEOUT_SECONDS - 5


@contextlib.contextmanager
def _asynchronous_commits() -> Iterator[None]:
    """Claims and "delivered" marks commit without waiting for the WAL flush (a flush per event
    was most of a delivery's cost). Losing the last of them in a PostgreSQL crash loses no event:
    a lost claim has no holder left, and a lost "delivered" means the event is sent again under
    its own webhook-id, which receivers de-duplicate on (at least once is the contract). What
    ends a delivery for good (failed, an endpoint disabled) commits synchronously."""
    with db.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
    try:
        yield
    finally:
        with db.cursor() as cursor:
            cursor.execute("RESET synchronous_commit")


def _attempt(
    batch: list[claims.ClaimedDelivery], token: uuid.UUID, started: float
) -> dict[int, str]:
    """Send each claimed delivery and record its outcome; the deliveries delivered are marked in
    one statement (at the end, or before a failure is recorded, so that what a failure decides,
    such as disabling the endpoint, sees them)."""
    try:
        target: addresses.Target | str = addresses.check(batch[0].endpoint.url)
    except addresses.AddressRefused as refused:
        target = str(refused)
    outcomes: dict[int, str] = {}
    delivered: list[tuple[int, Answer, float]] = []
    # Once per batch, not per event: a batch lasts about EVENTS_DELIVERY_BATCH_MS, and a
    # previous secret signing for that much past its overlap only adds a signature.
    signing = batch[0].endpoint.signing_secrets(timezone.now())
    for index, delivery in enumerate(batch):
        if not delivery.endpoint.enabled:
            break  # disabled by the failure just recorded, which failed the rest with it
        if time.monotonic() - started > _budget():
            claims.release([row.id for row in batch[index:]], token)
            outbox.enqueue(delivery.endpoint.pk)
            break
        answer = send(delivery, target, timezone.now(), signing)
        if answer.ok:
            delivered.append((delivery.id, answer, time.time()))
            continue
        outcomes.update(_mark_delivered(batch[0].endpoint, delivered, token))
        delivered = []
        outcome = _record_failure(delivery, token, answer)
        if outcome == "failed":
            delivery.endpoint.enabled = Endpoint.objects.filter(
                id=delivery.endpoint.pk, enabled=True
            ).exists()
        outcomes[delivery.id] = outcome
    outcomes.update(_mark_delivered(batch[0].endpoint, delivered, token))
    return outcomes


def send(
    delivery: claims.ClaimedDelivery,
    target: addresses.Target | str,
    now: datetime,
    signing_secrets: list[str],
) -> Answer:
    """POST the event to the checked ``target`` (a sentence: the address was refused), signed
    with each of ``signing_secrets``."""
    if isinstance(target, str):
        return Answer(None, target, 0)
    started = time.perf_counter()
    body = delivery.body
    headers = signed_headers(delivery.uid, now, body, signing_secrets)
    headers["host"] = target.host_header
    headers["user-agent"] = "bipsync-partner-webhooks"
    try:
        response = _client(target.host).post(
            target.url,
            content=body.encode(),
            headers=headers,
            extensions={"sni_hostname": target.host},
        )
    except httpx.TimeoutException:
        return Answer(None, "The endpoint did not answer in time.", _ms(started))
    except httpx.HTTPError as error:
        return Answer(
            None, f"The endpoint could not be reached ({type(error).__name__}).", _ms(started)
        )
    duration = _ms(started)
    if 200 <= response.status_code < 300:
        return Answer(response.status_code, "", duration)
    return Answer(
        response.status_code,
        f"The endpoint answered {response.status_code}.",
        duration,
        _retry_after(response) if response.status_code == 429 else None,
    )


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


_local = threading.local()


def _client(host: str) -> httpx.Client:
    """One client per thread and host, so that a burst of events reuses its connections (and a
    connection opened for one host's certificate never carries another host's events)."""
    clients: dict[str, httpx.Client] | None = getattr(_local, "clients", None)
    if clients is None or len(clients) > 64:
        for old in (clients or {}).values():
            old.close()
        clients = _local.clients = {}
    if host not in clients:
        clients[host] = httpx.Client(
            timeout=settings.EVENTS_TIMEOUT_SECONDS, follow_redirects=False
        )
    return clients[host]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    seconds: float = (when - timezone.now()).total_seconds()
    return max(0.0, seconds)


def _mark_delivered(
    endpoint: Endpoint, delivered: list[tuple[int, Answer, float]], token: uuid.UUID
) -> dict[int, str]:
    """Mark the deliveries delivered (each with its answer and the Unix time it came) in one
    statement, each only while this worker still holds it (a worker that lost its claim records
    nothing)."""
    if not delivered:
        return {}
    with db.cursor() as cursor:
        # Hand-written: bulk_update's CASE per field and row cost more than the POSTs, and it
        # cannot say which rows were still ours. Only the table's own name is interpolated.
        cursor.execute(
            f"""
            UPDATE {Delivery._meta.db_table} AS d SET
                status = %s, attempts = d.attempts + 1,
                first_attempt_at = COALESCE(d.first_attempt_at, v.at),
                last_attempt_at = v.at, delivered_at = v.at,
                last_status_code = v.code, last_duration_ms = v.ms, last_error = '',
                claim_token = NULL, lease_until = NULL
            FROM (
                SELECT id, to_timestamp(at) AS at, code, ms
                FROM unnest(%s::bigint[], %s::float8[], %s::integer[], %s::integer[])
                    AS u(id, at, code, ms)
            ) AS v
            WHERE d.id = v.id AND d.claim_token = %s
            RETURNING d.id
            """,  # noqa: S608
            [
                Delivery.Status.DELIVERED,
                [pk for pk, _, _ in delivered],
                # Unix times: adapting 100 datetimes was a tenth of the statement's cost.
                [at for _, _, at in delivered],
                [answer.status_code for _, answer, _ in delivered],
                [answer.duration_ms for _, answer, _ in delivered],
                token,
            ],
        )
        mine = {row[0] for row in cursor.fetchall()}
    if mine and endpoint.failing_since is not None:
        Endpoint.objects.filter(id=endpoint.pk).update(failing_since=None)
        endpoint.failing_since = None
    return {pk: "delivered" if pk in mine else "claim lost" for pk, _, _ in delivered}


def _record_failure(delivery: claims.ClaimedDelivery, token: uuid.UUID, answer: Answer) -> str:
    """Record an attempt that was not delivered: a retry after back-off, or failed for good."""
    now = timezone.now()
    first = delivery.first_attempt_at or now
    mine = Delivery.objects.filter(id=delivery.id, claim_token=token)
    common = {
        "attempts": delivery.attempts + 1,
        "first_attempt_at": first,
        "last_attempt_at": now,
        "last_status_code": answer.status_code,
        "last_duration_ms": answer.duration_ms,
        "last_error": answer.error,
        "claim_token": None,
        "lease_until": None,
    }
    delivery.attempts += 1
    endpoint_id = delivery.endpoint.pk
    endpoint = Endpoint.objects.filter(id=endpoint_id)
    with transaction.atomic():
        deadline = first + retry_period()
        if now < deadline:
            delay = max(backoff(delivery.attempts), answer.retry_after or 0.0)
            at = min(now + timedelta(seconds=delay), deadline)
            if not mine.update(next_attempt_at=at, **common):
                return "claim lost"
            if endpoint.filter(failing_since__isnull=True).update(failing_since=now):
                delivery.endpoint.failing_since = now
            outbox.enqueue(endpoint_id, countdown=(at - now).total_seconds())
            return "retry"
        with db.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = on")
        if not mine.update(status=Delivery.Status.FAILED, **common):
            return "claim lost"
        endpoint.filter(failing_since__isnull=True).update(failing_since=now)
        if not _disable_if_failing(endpoint_id, now):
            transaction.on_commit(lambda: notifications.delivery_failed(delivery.id))
    return "failed"


def _disable_if_failing(endpoint_id: uuid.UUID, now: datetime) -> bool:
    """Disable the endpoint when every delivery to it has failed for the whole retry period,
    failing what it still had pending; True when this call disabled it."""
    endpoint = Endpoint.objects.select_for_update().select_related("team").get(id=endpoint_id)
    if (
        not endpoint.enabled
        or endpoint.failing_since is None
        or endpoint.failing_since > now - retry_period()
    ):
        return False
    endpoint.enabled = False
    endpoint.disabled_reason = (
        f"Disabled on {now:%Y-%m-%d %H:%M} UTC: every delivery had failed since "
        f"{endpoint.failing_since:%Y-%m-%d %H:%M} UTC."
    )
    endpoint.save(update_fields=["enabled", "disabled_reason"])
    held = (
        Delivery.objects.filter(endpoint=endpoint, status=Delivery.Status.PENDING)
        .order_by()
        .update(
            status=Delivery.Status.FAILED,
            last_error="Not sent: the endpoint was disabled.",
            claim_token=None,
            lease_until=None,
        )
    )
    failed = (
        Delivery.objects.filter(endpoint=endpoint, status=Delivery.Status.FAILED)
        .filter(Q(delivered_at__isnull=True), last_attempt_at__gte=endpoint.failing_since)
        .count()
    )
    transaction.on_commit(lambda: notifications.endpoint_disabled(endpoint, failed + held))
    return True


def replay(delivery: Delivery) -> None:
    """Send the event again (same webhook-id), with a fresh retry period; queued on commit."""
    now = timezone.now()
    Delivery.objects.filter(id=delivery.pk).update(
        status=Delivery.Status.PENDING,
        next_attempt_at=now,
        first_attempt_at=None,
        claim_token=None,
        lease_until=None,
    )
    outbox.enqueue(delivery.endpoint_id)


def sweep() -> int:
    """Queue a run for each endpoint with a delivery due for a while (its run was lost, or its
    worker died holding it); how many were queued."""
    now = timezone.now()
    # Due for a while: a just-due retry is about to arrive on its own countdown.
    endpoints = list(
        Delivery.objects.filter(
            Q(lease_until__isnull=True) | Q(lease_until__lt=now),
            status=Delivery.Status.PENDING,
            next_attempt_at__lte=now - timedelta(seconds=settings.EVENTS_SWEEP_GRACE_SECONDS),
            endpoint__enabled=True,
        )
        .order_by("endpoint_id")
        .distinct("endpoint_id")
        .values_list("endpoint_id", flat=True)[: settings.EVENTS_SWEEP_BATCH]
    )
    # An endpoint queued by one sweep is not queued again by the next while its run waits.
    markers = OnceKeys("events-sweep", ttl_seconds=max(5, settings.EVENTS_LEASE_SECONDS))
    claimed = markers.claim_many([markers.name(endpoint_id) for endpoint_id in endpoints])
    queued = 0
    for endpoint_id, mine in zip(endpoints, claimed, strict=True):
        if mine:
            # Even while a run waits: that one may be lost.
            outbox.publish(endpoint_id)
            queued += 1
    return queued
