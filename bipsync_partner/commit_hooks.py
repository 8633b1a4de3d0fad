"""Work to do once when the current transaction commits, however often it is asked for.

A transaction that records 10,000 events for one endpoint needs one nudge of that endpoint's
deliverer after it commits, not 10,000 (each a Redis round trip on the writer's thread, and each
able to queue another run once a worker has started the first: bench/README.md, "Outbound
events"). :func:`on_commit_once` keeps, per thread and database, the keys already asked for in
the transaction under way, inside the callback that Django's ``transaction.on_commit`` holds.

The callback is found again through a weak reference only. Django drops its callbacks when the
transaction (or the savepoint they were registered in) rolls back, the callback goes with them,
and the next request registers a fresh one: no key is ever left waiting for a commit that will
not come. A key asked for inside a savepoint that then rolls back, while the callback lives on
from an outer scope, still runs at the commit: one nudge too many, which every user of this
tolerates (a nudge is only a hint; the rows say what to do).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable

from django.db import DEFAULT_DB_ALIAS, transaction


class _Pending:
    """The keys of one transaction, run by Django's commit hook (one per transaction)."""

    def __init__(self) -> None:
        self.work: dict[Hashable, Callable[[], None]] = {}
        self.running = False

    def __call__(self) -> None:
        self.running = True  # a key asked for from here on belongs to another transaction
        for func in self.work.values():
            func()


_local = threading.local()


def on_commit_once(key: Hashable, func: Callable[[], None], using: str | None = None) -> None:
    """Run ``func`` when the current transaction commits (at once outside a transaction),
    unless an earlier call of this transaction already asked for ``key``."""
    alias = using or DEFAULT_DB_ALIAS
    if not transaction.get_connection(alias).in_atomic_block:
        func()
        return
    pending_by_alias: dict[str, weakref.ref[_Pending]] = _local.__dict__.setdefault("pending", {})
    reference = pending_by_alias.get(alias)
    pending = reference() if reference is not None else None
    if pending is None or pending.running:
        pending = _Pending()
        pending_by_alias[alias] = weakref.ref(pending)
        transaction.on_commit(pending, using=alias)
    pending.work.setdefault(key, func)
