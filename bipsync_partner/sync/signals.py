"""Signals of the sync, for features built on it.

``sync_completed`` is sent inside the transaction that marks a run succeeded, so that what a
receiver writes commits or rolls back with it; receivers get ``run`` (a
:class:`~bipsync_partner.sync.models.SyncRun`, its counts final).
"""

from __future__ import annotations

from django.dispatch import Signal

sync_completed = Signal()
