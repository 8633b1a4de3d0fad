"""Work to do once when the current transaction commits, however often it is asked for.

A transaction that records 10,000 events for one endpoint needs one nudge of that endpoint's
deliverer after it commits, not 10,000 (each a Redis round trip on the writer's thread, and each
able to queue another run once a worker has started the first: bench/README.md, "Outbound
events"). :func:`on_commit_once` keeps, per thread and database, the keys already asked for in
the transaction under way, inside the callback that Django's ``transaction.on_commit`` holds.

The callback is used again only while Django still holds it for the transaction under way
(it is looked for among the connection's pending commit hooks). Django drops its callbacks when
the transaction (or the savepoint they were registered in) rolls back, and the next request
then registers a fresh one: no key is ever left waiting for a commit that will not come, even
when something else still holds the old callback (a test's captured hooks, a traceback). A key
asked for inside a savepoint that then rolls back, while the callback lives on from an outer
scope, still runs at the commit: one nudge too many, which every user of this tolerates (a
nudge is only a hint; the rows say what to do).

Django keeps its pending hooks in ``connection.run_on_commit``, a list of ``(savepoint ids,
callback, robust)`` (django/db/backends/base/base.py); should a later Django keep them
elsewhere, each request registers its own callback, as ``transaction.on_commit`` alone would.
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
        #: Where it sits in the connection's pending hooks (a hint; checked before each use).
        self.position = -1

    def __call__(self) -> None:
        for func in self.work.values():
            func()


_local = threading.local()


def _still_pending(hooks: object, pending: _Pending) -> bool:
    """Whether Django still holds ``pending`` to run at the commit under way."""
    if not isinstance(hooks, list):
        return False
    position = pending.position
    if 0 <= position < len(hooks) and pending in hooks[position]:
        return True
    for position, hook in enumerate(hooks):  # moved: a savepoint rolled back before it
        if pending in hook:
            pending.position = position
            return True
    return False


def on_commit_once(key: Hashable, func: Callable[[], None], using: str | None = None) -> None:
    """Run ``func`` when the current transaction commits (at once outside a transaction),
    unless an earlier call of this transaction already asked for ``key``."""
    alias = using or DEFAULT_DB_ALIAS
    connection = transaction.get_connection(alias)
    if not connection.in_atomic_block:
        func()
        return
    pending_by_alias: dict[str, weakref.ref[_Pending]] = _local.__dict__.setdefault("pending", {})
    reference = pending_by_alias.get(alias)
    pending = reference() if reference is not None else None
    hooks = getattr(connection, "run_on_commit", None)
    if pending is None or not _still_pending(hooks, pending):
        pending = _Pending()
        pending_by_alias[alias] = weakref.ref(pending)
        transaction.on_commit(pending, using=alias)
        pending.position = len(hooks) - 1 if isinstance(hooks, list) else -1
    pending.work.setdefault(key, func)
