"""Reading pages ahead in a thread while the current one is written."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar, cast

from django.db import close_old_connections, connection

T = TypeVar("T")

#: Pages read ahead of the one being written: enough to ride out a slow answer, few enough that
#: memory stays a handful of pages whatever the number of documents.
PREFETCH_PAGES = 2


#: The interpreter's thread switch interval while pages are read ahead (Python's default is
#: 5 ms). The reading thread wakes several times per page (each chunk of the answer) and then
#: waits for the writing thread's hashing to give up the interpreter lock; a shorter interval
#: hands it over sooner (30,000 documents, 4 rounds each: median 0.60 -> 0.64 of the raw rate).
PREFETCH_SWITCH_INTERVAL = 0.0005


class Prefetch(Generic[T]):
    """Reads the next pages in a thread while the current one is written: the run then takes
    about max(fetch, write) per page instead of their sum. The queue holds PREFETCH_PAGES pages,
    so at most that many plus one are in memory whatever the number of documents (research's
    pages, and the resources' GraphQL pages)."""

    _END = object()

    def __init__(self, pages: Iterator[T]) -> None:
        self._pages = pages
        self._queue: queue.Queue[object] = queue.Queue(maxsize=PREFETCH_PAGES)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sync-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for page in self._pages:
                if not self._put(page):
                    return
            self._put(self._END)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)
        finally:
            # The token service may have used this thread's database connection.
            close_old_connections()
            connection.close()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield cast(T, item)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
