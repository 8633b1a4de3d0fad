"""Signals of the writes, for features built on them.

``write_delivered`` and ``write_failed`` are sent inside the transaction that records a write's
outcome (delivered, or failed for good), so that what a receiver writes commits or rolls back
with it; receivers get ``write`` (a :class:`~bipsync_partner.writes.models.Write`).
"""

from __future__ import annotations

from django.dispatch import Signal

write_delivered = Signal()
write_failed = Signal()
