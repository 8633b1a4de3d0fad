"""Companies (Bipsync categories) in the research pages: lookup fields hold category ids
(docs/bipsync.md, "Categories"), which the categories resource names, with tickers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import Q
from django.db.models.functions import Upper

from accounts.models import Team
from bipsync_partner.sync.engine.items import valid_id
from bipsync_partner.sync.models import SyncedCategory

#: Categories one company filter may stand for (a name several share, a ticker and a name).
MAX_MATCHES = 100


def ids_in(value: Any) -> Iterator[str]:
    """The Bipsync ids a field's value holds: an id, or a list of them (a lookup field)."""
    if isinstance(value, list):
        for item in value:
            if valid_id(item):
                yield item
    elif valid_id(value):
        yield value


def labels(team: Team, ids: Iterable[str]) -> dict[str, str]:
    """Category id -> "Name (TICKER)" for the team's live categories among ``ids``."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {
        c.bipsync_id: str(c)
        for c in SyncedCategory.objects.filter(
            team=team, bipsync_id__in=wanted, deleted_at__isnull=True
        ).only("bipsync_id", "name", "ticker")
    }


def matching(team: Team, text: str) -> list[str]:
    """The ids of the team's live categories whose ticker or name is ``text`` (ignoring case)."""
    wanted = text.strip().upper()
    found = (
        SyncedCategory.objects.filter(team=team, deleted_at__isnull=True)
        .alias(upper_ticker=Upper("ticker"), upper_name=Upper("name"))
        .filter(Q(upper_ticker=wanted) | Q(upper_name=wanted))
        .values_list("bipsync_id", flat=True)
    )
    return list(found[:MAX_MATCHES])
