"""Cursor pages over a queryset, in id order: a keyset ``id > after`` (stable while rows are
added, unlike offsets), with signed cursors a client cannot make up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from django.conf import settings
from django.core import signing
from django.db import models

from bipsync_partner.api.problems import Problem, bad_parameter

M = TypeVar("M", bound=models.Model)

_SIGNER = signing.Signer(salt="bipsync_partner.api.page", sep=".")


@dataclass(frozen=True)
class Page(Generic[M]):
    items: list[M]
    next_cursor: str | None


def page_size(limit: int | None) -> int:
    """The page size asked for, within API_PAGE_SIZE_MAX (else a 400 naming ``limit``)."""
    if limit is None:
        return int(settings.API_PAGE_SIZE_DEFAULT)
    if not 1 <= limit <= settings.API_PAGE_SIZE_MAX:
        raise bad_parameter(
            "limit", "query", f"must be between 1 and {settings.API_PAGE_SIZE_MAX}."
        )
    return limit


def _position(after: str | None) -> int:
    if after is None:
        return 0
    try:
        return int(_SIGNER.unsign(after))
    except (signing.BadSignature, ValueError):
        raise bad_parameter(
            "after", "query", "is not a cursor this list gave out; start again without it."
        ) from None


def page(rows: models.QuerySet[M], after: str | None, limit: int | None) -> Page[M]:
    size = page_size(limit)
    found = list(rows.filter(pk__gt=_position(after)).order_by("pk")[: size + 1])
    more = len(found) > size
    items = found[:size]
    return Page(items=items, next_cursor=_SIGNER.sign(str(items[-1].pk)) if more else None)


def one(rows: models.QuerySet[M], pk: object, what: str) -> M:
    """The row ``pk`` among ``rows`` (the caller's), else a 404 that says no more than that."""
    found = rows.filter(pk=pk).first()
    if found is None:
        raise Problem(404, f"No such {what}.")
    return found
