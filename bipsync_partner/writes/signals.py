"""Signals of the writes, for features built on them.

``write_delivered`` and ``write_failed`` are sent inside the transaction that records a write's
outcome (delivered, or failed for good), so that what a receiver writes commits or rolls back
with it; receivers get ``writes``, a list of one team's
:class:`~bipsync_partner.writes.models.Write` (a delivery run records a group's outcomes
together). That transaction commits without waiting for its disk flush: should PostgreSQL crash
before it, the receiver's rows are lost with the outcome, and the signal is sent again when the
write's outcome is recorded again.
"""

from __future__ import annotations

from django.dispatch import Signal

write_delivered = Signal()
write_failed = Signal()
