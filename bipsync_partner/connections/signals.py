"""Signals of the connections app, for features built on top of it.

``connection_needs_reconnect`` is sent (after the change is committed) when the token service
moves a connection to ``needs_reconnect``; receivers get ``connection`` and ``reason`` (the
sentence stored as ``last_error_message``). The admin email and the in-app banner listen to it.
"""

from __future__ import annotations

from django.dispatch import Signal

connection_needs_reconnect = Signal()
