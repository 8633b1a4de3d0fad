"""The research browser's queries: filters, a count that stays cheap, and pages at any depth.

A team may hold a million documents, so nothing here reads them all for one page view:

- the count is exact up to ``RESEARCH_EXACT_COUNT_LIMIT`` (a ``COUNT`` over at most that many
  rows plus one), "more than" the bound above it, as Gmail and GitHub say; when PostgreSQL's own
  estimate of the filtered query's rows (the planner's row estimate in ``EXPLAIN``: reading no
  row at all) is far above the bound, nothing is counted and the page says "about" the
  estimate. A numbered page that holds the last match makes the count exact (its offset plus
  its rows);
- the first pages are numbered and read with ``OFFSET`` (at most ``MAX_NUMBERED_PAGES``);
  beyond them, and for "Last", pages are read by keyset from the last row shown (``WHERE (modified, id) < (…)`` on the same index), which costs the same on the first
  page and on the millionth (https://use-the-index-luke.com/no-offset);
- the authors offered in the filter are found by a loose index scan (one index descent per
  author, https://wiki.postgresql.org/wiki/Loose_indexscan), not by grouping every row.

Everything takes the queryset of the documents the viewer may read, so the visibility rule
stays where it is defined.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import F, Lookup, Q, QuerySet, Value
from django.db.models.expressions import OrderBy, RawSQL

from bipsync_partner.sync.engine.items import valid_id
from bipsync_partner.sync.models import ResearchDocument

#: What the page shows of each document.
COLUMNS = (
    "title",
    "bipsync_id",
    "content_type_bid",
    "author_bid",
    "author_name",
    "bipsync_modified",
    "tenant",
    "lookup_fields",
)
#: Newest first; the primary key breaks ties so that every row has one place in the order.
ORDER = (F("bipsync_modified").desc(nulls_first=True), F("pk").desc())
REVERSED = (F("bipsync_modified").asc(nulls_last=True), F("pk").asc())
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ContainsText(Lookup[str]):
    """``column ILIKE '%text%'``: "contains, ignoring case" in the form the trigram index on
    the plain column serves (https://www.postgresql.org/docs/current/pgtrgm.html#PGTRGM-INDEX).
    Django's ``icontains`` compares ``UPPER(column)``, which that index cannot answer."""

    lookup_name = "contains_text"

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} ILIKE {rhs}", [*lhs_params, *rhs_params]


def title_contains(text: str) -> ContainsText:
    """A filter on titles containing ``text``; ``%``, ``_`` and ``\\`` in it are plain characters."""
    return ContainsText(F("title"), f"%{connection.ops.prep_for_like_query(text)}%")


def filtered(
    documents: QuerySet[ResearchDocument], data: dict[str, Any]
) -> QuerySet[ResearchDocument]:
    """The documents that match a valid filter form's data."""
    if data.get("q"):
        documents = documents.filter(title_contains(data["q"]))
    if data.get("content_type"):
        documents = documents.filter(content_type_bid=data["content_type"])
    if data.get("author"):
        documents = documents.filter(author_bid=data["author"])
    if data.get("company"):
        documents = documents.filter(tagged_with(data["company"]))
    return documents


class PathExists(Lookup[Any]):
    """``column @? path``: the SQL/JSON path finds something in the JSON column."""

    lookup_name = "path_exists"

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} @? {rhs}::jsonpath", [*lhs_params, *rhs_params]


def tagged_with(category_ids: Sequence[str]) -> PathExists:
    """Documents one of whose fields holds one of the categories (a lookup field holds an id or
    a list of ids; lax SQL/JSON paths look into the lists,
    https://www.postgresql.org/docs/current/functions-json.html#STRICT-AND-LAX-MODES).
    The ids are 24-hex (the caller's are stored Bipsync ids), so the path is built from them."""
    wanted = " || ".join(f'@ == "{bid}"' for bid in category_ids if valid_id(bid))
    return PathExists(F("lookup_fields"), Value(f"$.* ? ({wanted or '1 == 2'})"))


# --- counting -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Count:
    """How many documents match: ``value`` exactly, about ``value`` (``exact`` false), or more
    than ``value`` (``more_than``: the count stopped at its bound)."""

    value: int
    exact: bool
    more_than: bool = False

    def __str__(self) -> str:
        noun = "document" if self.value == 1 and self.exact else "documents"
        if self.exact:
            return f"{self.value:,} {noun}"
        if self.more_than:
            return f"more than {self.value:,} {noun}"
        return f"about {about(self.value)} {noun}"


def about(n: int) -> str:
    """A number as people round it: two significant figures, "1.2 million" from a million on."""
    if n <= 0:
        return "0"
    digits = math.floor(math.log10(n)) + 1
    rounded = round(n, 2 - digits) if digits > 2 else n
    if rounded >= 1_000_000:
        return f"{rounded / 1_000_000:.1f}".rstrip("0").rstrip(".") + " million"
    return f"{rounded:,}"


def exact_count_limit() -> int:
    return int(settings.RESEARCH_EXACT_COUNT_LIMIT)


#: Above this many times the bound, the planner's estimate is taken as it is and nothing is
#: counted: counting even the bound's rows of a search term reads each of them from the table
#: to recheck its title (126 ms for 10,000 at a million documents, bench/README.md), and an
#: estimate that far above the bound is not wrong about the count being above it.
TRUSTED_ESTIMATE_FACTOR = 4


def count(documents: QuerySet[ResearchDocument], limit: int) -> Count:
    """Exact up to ``limit`` rows; above it "more than ``limit``", or "about" the planner's
    estimate when that is far above the bound (then nothing is counted)."""
    estimate = planner_estimate(documents)
    if estimate > TRUSTED_ESTIMATE_FACTOR * limit:
        return Count(estimate, exact=False)
    found = documents.order_by()[: limit + 1].count()
    if found <= limit:
        return Count(found, exact=True)
    return Count(limit, exact=False, more_than=True)


def planner_estimate(documents: QuerySet[ResearchDocument]) -> int:
    """The rows PostgreSQL expects the query to return (``EXPLAIN``'s estimate; nothing read)."""
    sql, params = documents.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    return int(plan[0]["Plan"]["Plan Rows"])


# --- pages --------------------------------------------------------------------------------------


class PageError(Exception):
    """The page asked for does not exist; the message is a sentence for the page."""


@dataclass(frozen=True)
class Cursor:
    """A row's place in the order: its modification time (or none) and primary key."""

    modified: datetime | None
    pk: int

    _FORM = re.compile(r"^(-?\d{1,19})?~(\d{1,19})$")

    @classmethod
    def of(cls, doc: ResearchDocument) -> Cursor:
        return cls(doc.bipsync_modified, int(doc.pk))

    @classmethod
    def parse(cls, text: str) -> Cursor:
        match = cls._FORM.match(text)
        if match is None:
            raise PageError("This page link is not valid; start again from the first page.")
        micros, pk = match.groups()
        try:
            modified = EPOCH + timedelta(microseconds=int(micros)) if micros else None
        except OverflowError:
            raise PageError(
                "This page link is not valid; start again from the first page."
            ) from None
        return cls(modified, int(pk))

    def __str__(self) -> str:
        if self.modified is None:
            return f"~{self.pk}"
        delta = self.modified - EPOCH
        micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
        return f"{micros}~{self.pk}"


@dataclass
class Page:
    """One page of documents and the links around it (query parameters, or None)."""

    object_list: list[ResearchDocument]
    count: Count
    number: int | None
    numbered_pages: int
    previous: dict[str, str] | None = None
    next: dict[str, str] | None = None
    first: dict[str, str] | None = field(default_factory=dict)
    last: dict[str, str] | None = None

    @property
    def has_other_pages(self) -> bool:
        return self.previous is not None or self.next is not None

    @property
    def label(self) -> str:
        if self.number is None:
            return "Last page" if self.next is None else "Page beyond the numbered ones"
        if self.count.exact:
            return f"Page {self.number:,} of {self.numbered_pages:,}"
        if self.count.more_than:
            return f"Page {self.number:,} of more than {self._all_pages()}"
        return f"Page {self.number:,} of about {self._all_pages()}"

    def _all_pages(self) -> str:
        return about(math.ceil(self.count.value / max(1, self.per_page)))

    per_page: int = 50


#: Pages read by ``OFFSET``: each skipped row is still read and checked for visibility, so
#: page 200 of a million cost 75-150 ms; twenty pages (950 rows skipped at most) stay cheap,
#: and "Older" / "Last" reach the rest by keyset at the cost of a first page.
MAX_NUMBERED_PAGES = 20


def page(
    documents: QuerySet[ResearchDocument],
    *,
    number: str | None,
    after: str | None,
    before: str | None,
    per_page: int,
    limit: int,
) -> Page:
    """The page a request names: ``page`` (a number, or ``last``), or a keyset cursor."""
    documents = documents.only(*COLUMNS)
    total = count(documents, limit)
    pages = max(1, math.ceil(total.value / per_page))
    numbered = min(pages if total.exact else max(1, limit // per_page), MAX_NUMBERED_PAGES)
    all_numbered = total.exact and pages <= numbered
    last_link = _number_link(numbered) if all_numbered else {"page": "last"}
    if after or before:
        cursor = Cursor.parse(after or before or "")
        if after:
            result = _older(documents, total, cursor, per_page)
        else:
            result = _newer(documents, total, cursor, per_page)
    elif number == "last" and not all_numbered:
        result = _final(documents, total, per_page)
    else:
        wanted = numbered if number == "last" else _page_number(number, numbered, pages, total)
        result = _numbered(documents, total, wanted, numbered, per_page)
    if result.count.exact:
        pages = max(1, math.ceil(result.count.value / per_page))
    result.numbered_pages = pages if result.count.exact else 0
    result.per_page = per_page
    result.last = None if result.next is None else last_link
    result.first = None if result.previous is None else {}
    return result


def _page_number(text: str | None, numbered: int, pages: int, total: Count) -> int:
    if text is None or text == "":
        return 1
    if not re.fullmatch(r"\d{1,9}", text) or int(text) < 1:
        raise PageError("The page must be a whole number from 1, or “last”.")
    wanted = int(text)
    if total.exact and wanted > pages:
        raise PageError(f"There is no page {wanted:,}: the pages go up to {pages:,}.")
    if wanted > numbered:
        raise PageError(
            f"Pages are numbered up to {numbered:,}; go further with “Older” or “Last”, "
            "or narrow the search."
        )
    return wanted


def _number_link(number: int) -> dict[str, str]:
    return {} if number == 1 else {"page": str(number)}


def _numbered(
    documents: QuerySet[ResearchDocument], total: Count, number: int, numbered: int, per_page: int
) -> Page:
    start = (number - 1) * per_page
    rows = _read(documents, ORDER, per_page + 1, start)
    shown = rows[:per_page]
    if len(rows) <= per_page and (shown or number == 1):
        # The last match is on this page: an estimate is replaced by what was found (a planner
        # that expected thousands of rows where there are twelve does not say "about 4,000").
        total = Count(start + len(shown), exact=True)
    result = Page(shown, total, number, numbered)
    if number > 1:
        result.previous = _number_link(number - 1)
    if len(rows) > per_page:
        more = number < numbered
        result.next = _number_link(number + 1) if more else {"after": str(Cursor.of(shown[-1]))}
    return result


def _older(
    documents: QuerySet[ResearchDocument], total: Count, cursor: Cursor, per_page: int
) -> Page:
    rows = _forward(documents, cursor, per_page + 1)
    shown = rows[:per_page]
    result = Page(shown, total, None, 0, previous={"before": str(cursor)})
    if len(rows) > per_page:
        result.next = {"after": str(Cursor.of(shown[-1]))}
    return result


def _newer(
    documents: QuerySet[ResearchDocument], total: Count, cursor: Cursor, per_page: int
) -> Page:
    rows = _backward(documents, cursor, per_page + 1)
    shown = list(reversed(rows[:per_page]))
    result = Page(shown, total, None, 0, next={"after": str(cursor)})
    if len(rows) > per_page and shown:
        result.previous = {"before": str(Cursor.of(shown[0]))}
    return result


def _final(documents: QuerySet[ResearchDocument], total: Count, per_page: int) -> Page:
    rows = _backward(documents, None, per_page)
    shown = list(reversed(rows))
    result = Page(shown, total, None, 0)
    if shown:
        result.previous = {"before": str(Cursor.of(shown[0]))}
    return result


def _forward(
    documents: QuerySet[ResearchDocument], cursor: Cursor, n: int
) -> list[ResearchDocument]:
    """Up to ``n`` rows after ``cursor`` in ORDER. Rows without a modification time come first
    (PostgreSQL sorts NULL first in descending order), so from one of those the rest of them
    come before every dated row: two queries, each an index range."""
    if cursor.modified is None:
        undated = documents.filter(bipsync_modified__isnull=True, pk__lt=cursor.pk)
        rows = _read(undated, (F("pk").desc(),), n)
        if len(rows) < n:
            dated = documents.filter(bipsync_modified__isnull=False)
            rows += _read(dated, ORDER, n - len(rows))
        return rows
    # "modified <= m" bounds the index range; the OR inside it only sorts out the ties.
    after = documents.filter(bipsync_modified__lte=cursor.modified).filter(
        Q(bipsync_modified__lt=cursor.modified) | Q(pk__lt=cursor.pk)
    )
    return _read(after, ORDER, n)


def _backward(
    documents: QuerySet[ResearchDocument], cursor: Cursor | None, n: int
) -> list[ResearchDocument]:
    """Up to ``n`` rows before ``cursor`` in ORDER (from the end when None), nearest first."""
    if cursor is not None and cursor.modified is None:
        undated = documents.filter(bipsync_modified__isnull=True, pk__gt=cursor.pk)
        return _read(undated, (F("pk").asc(),), n)
    dated = documents.filter(bipsync_modified__isnull=False)
    if cursor is not None:
        dated = dated.filter(bipsync_modified__gte=cursor.modified).filter(
            Q(bipsync_modified__gt=cursor.modified) | Q(pk__gt=cursor.pk)
        )
    rows = _read(dated, REVERSED, n)
    if len(rows) < n:
        undated = documents.filter(bipsync_modified__isnull=True)
        rows += _read(undated, (F("pk").asc(),), n - len(rows))
    return rows


def _read(
    documents: QuerySet[ResearchDocument], order: Sequence[OrderBy], n: int, start: int = 0
) -> list[ResearchDocument]:
    """Rows ``start`` to ``start + n`` of ``documents`` in ``order``: their ids first, then the
    rows of those ids. The ids come from the ordered index alone (it carries the title, so a
    search is checked there too: an index-only scan), and only the rows shown are read from
    the table; reading whole rows while walking the index read every row passed over (6,472
    table rows for the 50 newest titles with a word in one of 100 titles, 23 ms against 5-14)."""
    ids = documents.order_by(*order).values("pk")[start : start + n]
    return list(ResearchDocument.objects.filter(pk__in=ids).only(*COLUMNS).order_by(*order))


# --- the filter's authors -----------------------------------------------------------------------


def author_names(documents: QuerySet[ResearchDocument], most: int) -> list[tuple[str, str]]:
    """The first ``most`` author ids (by id) of ``documents``, each with the greatest name a
    document gave it ("" when none did).

    A loose index scan: a recursive query steps from one author id to the next with one index
    descent each (the author index), instead of grouping every document; the name is one more
    descent in the index of named authors. Both steps are ``documents`` querysets, so the
    visibility rule applies to each.
    """
    step = (
        documents.filter(author_bid__gt=RawSQL("browser_authors.author_bid", ()))
        .order_by("author_bid")
        .values("author_bid")[:1]
    )
    first = documents.exclude(author_bid="").order_by("author_bid").values("author_bid")[:1]
    name = (
        documents.filter(author_bid=RawSQL("browser_authors.author_bid", ()))
        .exclude(author_name="")
        .order_by("-author_name")
        .values("author_name")[:1]
    )
    first_sql, first_params = first.query.sql_with_params()
    step_sql, step_params = step.query.sql_with_params()
    name_sql, name_params = name.query.sql_with_params()
    # Django compiled the three parts from querysets; every value is a parameter.
    sql = (
        "WITH RECURSIVE browser_authors(author_bid) AS ("  # noqa: S608
        f" ({first_sql})"
        f" UNION ALL SELECT ({step_sql}) FROM browser_authors"
        " WHERE browser_authors.author_bid IS NOT NULL)"
        f" SELECT browser_authors.author_bid, COALESCE(({name_sql}), '')"
        " FROM browser_authors WHERE browser_authors.author_bid IS NOT NULL LIMIT %s"
    )
    params: Sequence[Any] = (*first_params, *step_params, *name_params, most)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(str(bid), str(label)) for bid, label in cursor.fetchall()]
