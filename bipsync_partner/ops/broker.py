"""The Redis broker transport, with one workaround: a lost broker no longer crashes a worker.

When a worker loses Redis (a restart, a failover), Celery 5.7 first ``collect()``s the broken
connection, which detaches kombu's transport from its connection settings
(``transport.client = None``), and then closes the connection. Closing its default channel
restores the unacknowledged messages the worker holds (late acknowledgement: the task running,
any countdown refreshes waiting), and the restore builds a new Redis pool from the detached
settings: ``AttributeError: 'NoneType' object has no attribute 'hostname'``. That error is not a
connection error, so nothing on the way catches it and the worker exits ("Unrecoverable error").
The same failure of ``_connparams`` on a closed connection is kombu's
https://github.com/celery/kombu/issues/582; the restore at close is
https://github.com/celery/kombu/issues/970; the collect-then-close came with
https://github.com/celery/celery/pull/10242 (a fix for workers hanging on a lost broker,
https://github.com/celery/celery/issues/9705), so no release of celery 5.7 / kombu 5.7 is free of
it.

The workaround: each channel remembers the connection settings it was built with and uses them
when the transport has been detached. The restore then does what kombu means it to do: it puts
the messages back when Redis answers again, and otherwise fails with a Redis ``ConnectionError``,
which kombu's close path ignores as it always has (the messages stay in the broker's unacked
set, and the visibility timeout brings them back). :func:`install` points kombu's ``redis`` and
``rediss`` schemes at this transport; everything else is kombu's.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES, redis
from redis.exceptions import ConnectionError as RedisConnectionError

TRANSPORT = "bipsync_partner.ops.broker:Transport"


class Channel(redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        remembered: dict[bool, dict[str, Any]] = self.__dict__.setdefault("_remembered", {})
        if self.connection.client is None:
            if asynchronous in remembered:
                return dict(remembered[asynchronous])
            # Never built a pool, so nothing to restore through: a connection error, which
            # kombu's close path ignores.
            raise RedisConnectionError("The broker connection is closed.")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]  # not in the stubs
        remembered[asynchronous] = dict(params)
        return params


class Transport(redis.Transport):
    Channel = Channel


def install() -> None:
    """Use :class:`Transport` for ``redis://`` and ``rediss://`` broker URLs (the scheme still
    decides TLS: kombu reads it from the URL, not from the class)."""
    TRANSPORT_ALIASES["redis"] = TRANSPORT
    TRANSPORT_ALIASES["rediss"] = TRANSPORT
