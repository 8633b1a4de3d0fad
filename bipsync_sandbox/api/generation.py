"""Generate and mutate research documents in bulk, to feed sync tests and benchmarks.

``generate`` writes N realistic documents with one PostgreSQL ``COPY`` (100,000 in a few seconds, no
per-row saves); notes get an HTML body (a second ``COPY``), a few of them with markup a sanitiser
must drop. ``mutate`` edits, deletes and creates a fraction of a team's documents so that a sync
has changes to detect; the same seed always picks the same documents and makes the same changes.
Both are used by the ``generate_research`` / ``mutate_research`` commands and by the admin API.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from bipsync_sandbox.api import catalogue, rules, vocabulary
from bipsync_sandbox.api.models import ResearchDocument, object_id
from bipsync_sandbox.api.write_models import NoteBody
from bipsync_sandbox.authserver.models import Application
from bipsync_sandbox.identity.models import Membership, Team, Tenant

MAX_COUNT = 5_000_000
# How a mutation splits its share of documents: edits, deletes, then creates take the rest.
EDIT_SHARE = 0.6
DELETE_SHARE = 0.2
HISTORY = timedelta(days=3 * 365)
BATCH = 5_000
#: The share of note bodies carrying a <script> or an event handler (for the sanitiser).
UNSAFE_SHARE = 0.05

_COLUMNS = (
    "id",
    "tenant_id",
    "team_id",
    "content_type_id",
    "title",
    "user_id",
    "owner_service_account_id",
    "private",
    "shared_with_apps",
    "fields",
    "created",
    "modified",
)
_TYPES = (
    "varchar",
    "int8",
    "varchar",
    "varchar",
    "varchar",
    "varchar",
    "varchar",
    "bool",
    "int8[]",
    "text",  # the JSON text; the server parses it into the jsonb column
    "timestamptz",
    "timestamptz",
)

Progress = Callable[[int], object]


class GenerationError(ValueError):
    """Bad arguments (unknown tenant or team, no users, out-of-range numbers)."""


@dataclass(frozen=True)
class GenerateResult:
    created: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MutateResult:
    edited: int
    deleted: int
    created: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _team(tenant_slug: str, team_id: str) -> tuple[Tenant, Team, list[str]]:
    tenant = Tenant.objects.filter(slug=tenant_slug).first()
    if tenant is None:
        raise GenerationError(f"There is no tenant {tenant_slug!r}.")
    team = Team.objects.filter(pk=team_id, tenant=tenant).first()
    if team is None:
        raise GenerationError(f"Tenant {tenant_slug!r} has no team {team_id!r}.")
    users = sorted(
        Membership.objects.filter(team=team, user__is_active=True).values_list("user_id", flat=True)
    )
    if not users:
        raise GenerationError("The team has no active users to be the documents' authors.")
    return tenant, team, users


def _share_ids(tenant: Tenant, client_ids: Iterable[str]) -> list[int]:
    ids: list[int] = []
    for client_id in client_ids:
        app = Application.objects.filter(client_id=client_id).first()
        if app is None:
            raise GenerationError(f"There is no application {client_id!r} to share with.")
        ids.append(app.pk)
    return sorted(set(ids))


class _Factory:
    """Makes document rows from a seeded random source."""

    def __init__(
        self,
        tenant: Tenant,
        team: Team,
        users: list[str],
        rng: random.Random,
        *,
        share_with: list[int],
        private_fraction: float,
        seed: int | None = None,
    ) -> None:
        self.tenant = tenant
        # Bodies draw from a random source of their own, so that the documents' rows stay the
        # ones a seed gave before bodies existed.
        self.body_rng = random.Random(None if seed is None else f"bodies-{seed}")
        #: (document id, HTML) of the notes made so far, written after the documents.
        self.bodies: list[tuple[str, str]] = []
        self.team = team
        self.users = users
        self.rng = rng
        self.share_with = share_with
        self.private_fraction = private_fraction
        # ObjectId layout after the 4-byte time: 5 random bytes per run, then a 3-byte counter.
        # The run's random part keeps ids unique when the same seed generates twice in one
        # second; the counter (seeded) keeps the order of a run's documents the same every time.
        self.run_id = secrets.token_hex(5)
        self.counter = rng.getrandbits(24)
        self.cat = catalogue.load(tenant)
        self.kinds = [k for k in vocabulary.KIND_WEIGHTS if k in self.cat.content_types]
        self.weights = [vocabulary.KIND_WEIGHTS[k] for k in self.kinds]
        self.companies = self.cat.categories.get("entity", [])
        self.regions = self.cat.categories.get("region", [])

    def fields_for(
        self, kind: str, company: str, created: datetime, region: str | None = None
    ) -> dict[str, Any]:
        rng = self.rng
        known = self.cat.fields.get(kind, {})
        values: dict[str, Any] = {}
        if "entities" in known and self.companies:
            extra = rng.sample(self.companies, k=rng.choice((0, 0, 0, 1, 2)))
            values["entities"] = list(dict.fromkeys([company, *extra]))
        if "sectors" in known and company in self.cat.sector_of:
            values["sectors"] = [self.cat.sector_of[company]]
        if "regions" in known and self.regions:
            values["regions"] = [region or rng.choice(self.regions)]
        if "rating" in known and not known["rating"].disabled:
            values["rating"] = rng.choice(vocabulary.RATINGS)
        if "priceTarget" in known:
            values["priceTarget"] = round(rng.uniform(5, 900), 2)
        if "meetingDate" in known:
            values["meetingDate"] = created.date().isoformat()
        return values

    def title(self, kind: str, company: str, created: datetime, region: str | None = None) -> str:
        rng = self.rng
        sector_id = self.cat.sector_of.get(company)
        region = region or (rng.choice(self.regions) if self.regions else None)
        return rng.choice(vocabulary.NOTE_KINDS[kind]).format(
            company=self.cat.names.get(company, "Acme"),
            ticker=self.cat.tickers.get(company, "ACME"),
            sector=self.cat.names.get(sector_id, "Industrials") if sector_id else "Industrials",
            region=self.cat.names.get(region, "Europe") if region else "Europe",
            quarter=f"Q{(created.month - 1) // 3 + 1}",
            year=created.year,
            month=vocabulary.MONTHS[created.month - 1],
            city=rng.choice(vocabulary.CITIES),
        )

    def body(self, company: str, created: datetime, region: str | None) -> str:
        rng = self.body_rng
        paragraphs = rng.sample(vocabulary.NOTE_PARAGRAPHS, k=rng.randint(2, 4))
        if rng.random() < UNSAFE_SHARE:
            paragraphs.insert(
                rng.randint(0, len(paragraphs)), rng.choice(vocabulary.UNSAFE_PARAGRAPHS)
            )
        sector_id = self.cat.sector_of.get(company)
        words = {
            "company": self.cat.names.get(company, "Acme"),
            "ticker": self.cat.tickers.get(company, "ACME"),
            "sector": self.cat.names.get(sector_id, "Industrials") if sector_id else "Industrials",
            "region": self.cat.names.get(region, "Europe") if region else "Europe",
            "quarter": f"Q{(created.month - 1) // 3 + 1}",
            "year": created.year,
            "city": rng.choice(vocabulary.CITIES),
        }
        return "".join(paragraph.format(**words) for paragraph in paragraphs)

    def next_id(self, created: datetime) -> str:
        self.counter = (self.counter + 1) % (1 << 24)
        return object_id(created, f"{self.run_id}{self.counter:06x}")

    def row(self, created: datetime, modified: datetime) -> tuple[Any, ...]:
        rng = self.rng
        kind = rng.choices(self.kinds, weights=self.weights)[0]
        company = rng.choice(self.companies) if self.companies else ""
        # One region for the title and the field, so that "Japan macro outlook" is filed under Japan.
        region = rng.choice(self.regions) if self.regions else None
        private = rng.random() < self.private_fraction
        doc_id = self.next_id(created)
        if kind == catalogue.NOTE_CONTENT_TYPE:
            self.bodies.append((doc_id, self.body(company, created, region)))
        return (
            doc_id,
            self.tenant.pk,
            self.team.pk,
            self.cat.content_types[kind].id,
            self.title(kind, company, created, region),
            rng.choice(self.users),
            None,
            private,
            [] if private else self.share_with,
            self.fields_for(kind, company, created, region),
            created,
            modified,
        )

    def historical(self, until: datetime) -> tuple[Any, ...]:
        rng = self.rng
        created = until - timedelta(seconds=rng.uniform(0, HISTORY.total_seconds()))
        if rng.random() < 0.4:
            modified = min(until, created + timedelta(seconds=rng.uniform(0, 30 * 86400)))
        else:
            modified = created
        return self.row(created, modified)


def _copy(rows: Iterator[tuple[Any, ...]], progress: Progress | None) -> int:
    table = ResearchDocument._meta.db_table
    written = 0
    with connection.cursor() as cursor:
        raw: Any = cursor.cursor  # the psycopg cursor: Django has no COPY API
        with raw.copy(f"COPY {table} ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
            copy.set_types(list(_TYPES))
            for row in rows:
                copy.write_row((*row[:9], json.dumps(row[9]), *row[10:]))
                written += 1
                if progress is not None and written % BATCH == 0:
                    progress(BATCH)
    if progress is not None and written % BATCH:
        progress(written % BATCH)
    return written


def _copy_bodies(factory: _Factory) -> None:
    """The notes' bodies, after their documents (the body's key references the document)."""
    table = NoteBody._meta.db_table
    with connection.cursor() as cursor:
        raw: Any = cursor.cursor  # the psycopg cursor: Django has no COPY API
        with raw.copy(
            f"COPY {table} (document_id, content, external_ids, history) FROM STDIN"
        ) as copy:
            for doc_id, content in factory.bodies:
                copy.write_row((doc_id, content, "[]", "[]"))
    factory.bodies.clear()


def _analyze() -> None:
    """Refresh statistics and the visibility map after a bulk change.

    Paging runs as index-only scans (see the covering index on ResearchDocument), which skip the
    heap only for pages the visibility map marks all-visible; VACUUM sets it. VACUUM cannot run in
    a transaction, so inside one (tests using Django's test client) only ANALYZE runs.
    """
    table = ResearchDocument._meta.db_table
    with connection.cursor() as cursor:
        if connection.in_atomic_block:
            cursor.execute(f"ANALYZE {table}")
        else:
            cursor.execute(f"VACUUM (ANALYZE) {table}")


def generate(
    tenant_slug: str,
    team_id: str,
    count: int,
    *,
    seed: int | None = None,
    share_with: Iterable[str] = (),
    private_fraction: float = 0.1,
    until: datetime | None = None,
    progress: Progress | None = None,
) -> GenerateResult:
    """Create ``count`` documents in the team, authored by its users, dated over three years."""
    if not 1 <= count <= MAX_COUNT:
        raise GenerationError(f"count must be between 1 and {MAX_COUNT}.")
    if not 0 <= private_fraction <= 1:
        raise GenerationError("private_fraction must be between 0 and 1.")
    started = time.monotonic()
    tenant, team, users = _team(tenant_slug, team_id)
    rng = random.Random(seed)
    factory = _Factory(
        tenant,
        team,
        users,
        rng,
        share_with=_share_ids(tenant, share_with),
        private_fraction=private_fraction,
        seed=seed,
    )
    now = timezone.now()
    moment = until or now
    if moment > now:
        raise GenerationError("until must not be in the future.")
    with transaction.atomic():
        created = _copy((factory.historical(moment) for _ in range(count)), progress)
        _copy_bodies(factory)
    _analyze()
    return GenerateResult(created=created, seconds=round(time.monotonic() - started, 3))


#: File names and sizes of generated attachments: a small PDF up to a 50 MB model, whose bytes the
#: download endpoint makes on the fly.
ATTACHMENT_FILES = [
    ("{ticker} results presentation.pdf", 1_843_200),
    ("{ticker} model.xlsx", 52_428_800),
    ("Channel check notes.docx", 48_213),
    ("{ticker} chart.png", 153_600),
    ("Expert call transcript.txt", 61_440),
]


def attach(tenant_slug: str, team_id: str, count: int, *, seed: int | None = None) -> int:
    """Attach ``count`` files to the team's most recent notes (one each); returns how many."""
    from bipsync_sandbox.api import downloads
    from bipsync_sandbox.api.write_models import Attachment

    tenant, team, _users = _team(tenant_slug, team_id)
    cat = catalogue.load(tenant)
    rng = random.Random(None if seed is None else f"attachments-{seed}")
    notes = list(
        ResearchDocument.objects.filter(
            team=team, content_type=cat.content_types[catalogue.NOTE_CONTENT_TYPE]
        )
        .order_by("-created")
        .values_list("id", "user_id", "fields")[:count]
    )
    rows = []
    now = timezone.now()
    for index, (doc_id, user_id, fields) in enumerate(notes):
        name, length = ATTACHMENT_FILES[index % len(ATTACHMENT_FILES)]
        companies = (fields or {}).get("entities") or [""]
        ticker = cat.tickers.get(companies[0], "ACME")
        row = Attachment(
            tenant=tenant,
            document_id=doc_id,
            user_id=user_id,
            file_name=name.format(ticker=ticker),
            length=length + rng.randint(0, 4096),
            uploads=1,
            uploaded_at=now,
        )
        row.sha256 = downloads.sha256_of(row.id, row.length)
        row.uploaded_size = row.length
        rows.append(row)
    Attachment.objects.bulk_create(rows)
    return len(rows)


def parse_until(raw: str) -> datetime:
    """An ISO-8601 moment for ``until`` (UTC when it names no offset)."""
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise GenerationError("until must be an ISO-8601 date and time.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _split(total: int, fraction: float) -> tuple[int, int, int]:
    changes = int(fraction * total + 0.5)
    edits = int(changes * EDIT_SHARE + 0.5)
    deletes = min(changes - edits, int(changes * DELETE_SHARE + 0.5))
    return edits, deletes, changes - edits - deletes


_EDIT_SQL = (
    "UPDATE {table} AS d SET title = v.title, fields = v.fields::jsonb, modified = v.modified "
    "FROM unnest(%s::varchar[], %s::varchar[], %s::text[], %s::timestamptz[]) "
    "AS v(id, title, fields, modified) WHERE d.id = v.id"
)


def mutate(
    tenant_slug: str,
    team_id: str,
    fraction: float,
    *,
    seed: int | None = None,
    share_with: Iterable[str] = (),
    private_fraction: float = 0.1,
) -> MutateResult:
    """Edit, delete and create documents: ``fraction`` of the team's documents change.

    Of the changes, 60% are edits (new title or field values, ``modified`` bumped), 20% deletes and
    the rest creations (dated now, so their ids sort last).
    """
    if not 0 < fraction <= 1:
        raise GenerationError("fraction must be greater than 0 and at most 1.")
    started = time.monotonic()
    tenant, team, users = _team(tenant_slug, team_id)
    rng = random.Random(seed)
    factory = _Factory(
        tenant,
        team,
        users,
        rng,
        share_with=_share_ids(tenant, share_with),
        private_fraction=private_fraction,
        seed=seed,
    )
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            ResearchDocument.objects.select_for_update()
            .filter(tenant=tenant, team=team)
            .order_by("id")
            .values_list("id", flat=True)
        )
        edits, deletes, creates = _split(len(ids), fraction)
        chosen = rng.sample(ids, edits + deletes)
        edit_ids = sorted(chosen[:edits])
        delete_ids = chosen[edits:]
        _edit(factory, edit_ids, now)
        fired = rules.active(tenant.pk)
        if fired:  # rendered before the rows go
            rules.fire(tenant.pk, "deleted", _with_bodies(delete_ids))
        ResearchDocument.objects.filter(pk__in=delete_ids).delete()
        _copy((factory.row(now, now) for _ in range(creates)), None)
        _copy_bodies(factory)
        if fired:
            rules.fire(tenant.pk, "modified", _with_bodies(edit_ids))
            made = ResearchDocument.objects.filter(tenant=tenant, team=team, created=now)
            rules.fire(tenant.pk, "created", _with_bodies(made.values_list("id", flat=True)))
    _analyze()
    return MutateResult(
        edited=len(edit_ids),
        deleted=len(delete_ids),
        created=creates,
        seconds=round(time.monotonic() - started, 3),
    )


def _with_bodies(ids: Iterable[str]) -> Iterator[tuple[ResearchDocument, str]]:
    """The documents with their note content, for the Rules engine."""
    for document in ResearchDocument.objects.filter(pk__in=list(ids)).order_by("id"):
        yield document, ""


def _edit(factory: _Factory, ids: list[str], now: datetime) -> None:
    if not ids:
        return
    rng = factory.rng
    names = {ct.id: name for name, ct in factory.cat.content_types.items()}
    rows = ResearchDocument.objects.filter(pk__in=ids).order_by("id")
    new_titles: list[str] = []
    new_fields: list[str] = []
    for _doc_id, title, type_id, fields, created in rows.values_list(
        "id", "title", "content_type_id", "fields", "created"
    ):
        kind = names.get(type_id, "note")
        values = dict(fields or {})
        company = (values.get("entities") or [rng.choice(factory.companies)])[0]
        change = rng.random()
        if change < 0.4:
            suffix = rng.choice(vocabulary.EDIT_SUFFIXES)
            title = title if title.endswith(suffix) else f"{title} {suffix}"[:500]
        elif change < 0.7:
            title = factory.title(kind, company, created)
        else:
            values = factory.fields_for(kind, company, created)
        if "rating" in values:
            values["rating"] = rng.choice(vocabulary.RATINGS)
        new_titles.append(title)
        new_fields.append(json.dumps(values))
    table = ResearchDocument._meta.db_table
    # Edits share one timestamp, later than every earlier change: "modified" moves forward.
    with connection.cursor() as cursor:
        cursor.execute(
            _EDIT_SQL.format(table=table),
            [ids, new_titles, new_fields, [now] * len(ids)],
        )
