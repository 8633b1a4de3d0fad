"""Signals of the accounts app, for features built on top of it (accounts imports none of them).

- ``member_removal_preview`` is sent before a team admin confirms removing a member, with
  ``membership``; each receiver returns a list of sentences saying what the removal will take with
  it (the confirmation page lists them).
- ``member_removed`` is sent after a membership was deleted, with ``team``, ``user`` and
  ``actor``; receivers take away what the membership allowed (the connections app disconnects
  the member's own Bipsync connections in that team).
"""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal

from accounts.models import Membership

member_removal_preview = Signal()
member_removed = Signal()


def removal_preview(membership: Membership) -> list[str]:
    """Every receiver's sentences, in the order the receivers were connected."""
    sentences: list[str] = []
    for _receiver, answer in member_removal_preview.send(sender=Membership, membership=membership):
        sentences.extend(_sentences(answer))
    return sentences


def _sentences(answer: Any) -> list[str]:
    return [str(line) for line in answer or ()]
