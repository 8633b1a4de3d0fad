"""Signals of the connections app, for features built on top of it.

``connection_needs_reconnect`` is sent (after the change is committed) when the token service
moves a connection to ``needs_reconnect``; receivers get ``connection`` and ``reason`` (the
sentence stored as ``last_error_message``). The admin email and the in-app banner listen to it.

``connection_disconnected`` is sent (after the disconnect is committed) when a connection is
disconnected; receivers get ``connection``. The sync listens to it: the customer withdrew the
access, so what only that connection could see is removed.
"""

from __future__ import annotations

from django.dispatch import Signal

connection_needs_reconnect = Signal()
connection_disconnected = Signal()
