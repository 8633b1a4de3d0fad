"""Categories, contacts and projects in bulk, for GraphQL paging tests and the demo world.

Each kind is written with one PostgreSQL ``COPY`` (no per-row saves), so that 100,000 categories
take seconds. Names are unique per tenant (a run number keeps a second run from colliding with the
first); the same seed gives the same names, tickers and stages.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from bipsync_sandbox.api import catalogue, vocabulary
from bipsync_sandbox.api.models import Category, Contact, Project, object_id
from bipsync_sandbox.identity.models import Tenant

MAX_COUNT = 1_000_000
KINDS = ("categories", "contacts", "projects")


class DirectoryError(ValueError):
    """Bad arguments (unknown tenant, out-of-range count)."""


@dataclass(frozen=True)
class DirectoryResult:
    created: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tenant(slug: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise DirectoryError(f"There is no tenant {slug!r}.")
    return tenant


class _Ids:
    """ObjectId-shaped ids: now, a random run part, a counter (as the research generator)."""

    def __init__(self) -> None:
        self.run = secrets.token_hex(5)
        self.counter = 0
        self.now = timezone.now()

    def next(self) -> str:
        self.counter += 1
        return object_id(self.now, f"{self.run}{self.counter:06x}")


def _copy(table: str, columns: tuple[str, ...], rows: Iterator[tuple[Any, ...]]) -> int:
    written = 0
    with connection.cursor() as cursor:
        raw: Any = cursor.cursor  # the psycopg cursor: Django has no COPY API
        with raw.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                written += 1
    return written


def _category_rows(
    tenant: Tenant, company: str, count: int, rng: random.Random, with_tickers: bool, run: str
) -> Iterator[tuple[Any, ...]]:
    # No query may run while the COPY streams these rows: the classification comes in.
    ids = _Ids()
    for n in range(1, count + 1):
        stem = rng.choice(vocabulary.COMPANY_STEMS)
        suffix, _sector = rng.choice(vocabulary.COMPANY_SUFFIXES)
        ticker = f"{stem[:2].upper()}{suffix[0]}{n}"[:16] if with_tickers else ""
        external = {"crm": [f"C-{run}-{n:07d}"]}
        yield (
            ids.next(),
            tenant.pk,
            "entity",
            f"{stem} {suffix} {run}-{n}",
            ticker,
            company,
            json.dumps(external),
        )


def generate_categories(
    tenant_slug: str, count: int, *, with_tickers: bool = True, seed: int | None = None
) -> DirectoryResult:
    """``count`` companies (kind "entity", classification "Company"), with tickers and a CRM
    external id each."""
    return _generate(tenant_slug, "categories", count, seed=seed, with_tickers=with_tickers)


def generate(
    tenant_slug: str,
    kind: str,
    count: int,
    *,
    seed: int | None = None,
    with_tickers: bool = True,
) -> DirectoryResult:
    """``count`` categories, contacts or projects (``kind``) in the tenant."""
    return _generate(tenant_slug, kind, count, seed=seed, with_tickers=with_tickers)


def _generate(
    tenant_slug: str, kind: str, count: int, *, seed: int | None, with_tickers: bool
) -> DirectoryResult:
    if kind not in KINDS:
        raise DirectoryError(f"kind must be one of {', '.join(KINDS)}.")
    if not 1 <= count <= MAX_COUNT:
        raise DirectoryError(f"count must be between 1 and {MAX_COUNT}.")
    started = time.monotonic()
    tenant = _tenant(tenant_slug)
    catalogue.ensure(tenant)
    rng = random.Random(seed)
    run = secrets.token_hex(3)
    with transaction.atomic():
        if kind == "categories":
            company = catalogue.classify(tenant)["entity"].pk
            columns = ("id", "tenant_id", "kind", "name", "ticker", "classification_id")
            written = _copy(
                Category._meta.db_table,
                (*columns, "external_ids"),
                _category_rows(tenant, company, count, rng, with_tickers, run),
            )
        elif kind == "contacts":
            written = _copy(
                Contact._meta.db_table,
                ("id", "tenant_id", "name", "email", "external_ids"),
                _contact_rows(tenant, count, rng, run),
            )
        else:
            written = _copy(
                Project._meta.db_table,
                ("id", "tenant_id", "name", "stage", "external_ids"),
                _project_rows(tenant, count, rng, run),
            )
    # Fresh statistics, so that paging uses the (tenant, id) index instead of sorting the table.
    table = {"categories": Category, "contacts": Contact, "projects": Project}[kind]._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}")
    return DirectoryResult(created=written, seconds=round(time.monotonic() - started, 3))


def _contact_rows(
    tenant: Tenant, count: int, rng: random.Random, run: str
) -> Iterator[tuple[Any, ...]]:
    ids = _Ids()
    for n in range(1, count + 1):
        first, last = rng.choice(vocabulary.FIRST_NAMES), rng.choice(vocabulary.LAST_NAMES)
        email = f"{first}.{last}.{run}{n}@contacts.example".lower().replace("'", "")
        yield (
            ids.next(),
            tenant.pk,
            f"{first} {last}",
            email,
            json.dumps({"crm": [f"P-{run}-{n}"]}),
        )


def _project_rows(
    tenant: Tenant, count: int, rng: random.Random, run: str
) -> Iterator[tuple[Any, ...]]:
    ids = _Ids()
    for n in range(1, count + 1):
        stem = rng.choice(vocabulary.COMPANY_STEMS)
        name = f"{stem} {rng.choice(vocabulary.PROJECT_KINDS).lower()} {run}-{n}"
        stage = rng.choice(vocabulary.PROJECT_STAGES)
        yield (ids.next(), tenant.pk, name, stage, json.dumps({"pipeline": [f"D-{run}-{n}"]}))
