"""A tenant's content types, fields and categories, created on first use.

Every Bipsync site comes with its content types and fields configured; the sandbox gives each tenant
the same small, realistic set the first time something needs it (the REST endpoints, generation).
Creation is idempotent and safe under concurrent workers (unique constraints + ignore_conflicts).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from bipsync_sandbox.api import vocabulary
from bipsync_sandbox.api.models import Category, Classification, ContentType, Field, FieldType
from bipsync_sandbox.identity.models import Tenant

CONTENT_TYPES = [
    ("note", "Note"),
    ("meeting", "Meeting Note"),
    ("call", "Call Note"),
    ("file", "File"),
    ("model", "Model"),
]
NOTE_CONTENT_TYPE = "note"

# Lookup fields hold category ids; ``options.lookup`` names the category kind, as in Bipsync's
# API examples ("lookup": "entity").
_LOOKUPS = [("entities", "Entities", "entity"), ("sectors", "Sectors", "sector"), ("regions", "Regions", "region")]  # fmt: skip

COMPANY_COUNT = 400

# The classification of each category kind (GraphQL's ``Category.classification``).
CLASSIFICATIONS = {"entity": "Company", "sector": "Sector", "region": "Region"}


@dataclass
class Catalogue:
    content_types: dict[str, ContentType]
    # content type name -> api identifier -> field
    fields: dict[str, dict[str, Field]]
    # category kind -> category ids (stable order)
    categories: dict[str, list[str]] = field(default_factory=dict)
    tickers: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    sector_of: dict[str, str] = field(default_factory=dict)


def _field_specs(content_type: str) -> list[tuple[str, str, str, dict[str, Any], bool]]:
    specs: list[tuple[str, str, str, dict[str, Any], bool]] = [
        (
            identifier,
            name,
            FieldType.LOOKUP,
            {
                "allowMultiple": True,
                "supportsAutopopulation": identifier == "entities",
                "lookup": lookup,
                "lookupFlags": "groupByClassification" if identifier == "entities" else "",
            },
            False,
        )
        for identifier, name, lookup in _LOOKUPS
    ]
    if content_type in {"note", "meeting", "model"}:
        specs.append(("rating", "Rating", FieldType.SELECT, {"choices": vocabulary.RATINGS}, False))
    if content_type in {"note", "model"}:
        specs.append(("priceTarget", "Price Target", FieldType.NUMBER, {"decimals": 2}, False))
    if content_type == "meeting":
        specs.append(("meetingDate", "Meeting Date", FieldType.DATE, {}, False))
    if content_type == "note":
        # A retired field: listed by /v1/field with "disabled": true, never filled in.
        specs.append(("legacyTicker", "Ticker (old)", FieldType.TEXT, {}, True))
    return specs


def _companies() -> list[tuple[str, str, str]]:
    """(name, ticker, sector) for a fixed, realistic list of companies."""
    rng = random.Random("sandbox-companies")
    pairs = [
        (stem, suffix)
        for stem in vocabulary.COMPANY_STEMS
        for suffix in vocabulary.COMPANY_SUFFIXES
    ]
    rng.shuffle(pairs)
    result: list[tuple[str, str, str]] = []
    tickers: set[str] = set()
    for stem, (suffix, sector) in pairs[:COMPANY_COUNT]:
        base = (stem[:3] + suffix[0]).upper()
        ticker = base
        n = 1
        while ticker in tickers:
            ticker = f"{base[:3]}{n}"
            n += 1
        tickers.add(ticker)
        result.append((f"{stem} {suffix}", ticker, sector))
    return result


def ensure(tenant: Tenant) -> None:
    """Create the tenant's content types, fields, categories and classifications unless they
    exist."""
    if ContentType.objects.filter(tenant=tenant).exists():
        if not Classification.objects.filter(tenant=tenant).exists():
            # A tenant made before classifications existed.
            classify(tenant)
        return
    with transaction.atomic():
        ContentType.objects.bulk_create(
            [ContentType(tenant=tenant, name=n, display_name=d) for n, d in CONTENT_TYPES],
            ignore_conflicts=True,
        )
        types = {ct.name: ct for ct in ContentType.objects.filter(tenant=tenant)}
        fields = []
        for name, content_type in types.items():
            for order, (identifier, label, kind, options, disabled) in enumerate(
                _field_specs(name)
            ):
                fields.append(
                    Field(
                        tenant=tenant,
                        content_type=content_type,
                        api_identifier=identifier,
                        name=label,
                        field_type=kind,
                        options=options,
                        order=order,
                        disabled=disabled,
                    )
                )
        Field.objects.bulk_create(fields, ignore_conflicts=True)
        categories = [
            Category(tenant=tenant, kind="entity", name=name, ticker=ticker)
            for name, ticker, _ in _companies()
        ]
        categories += [Category(tenant=tenant, kind="sector", name=s) for s in vocabulary.SECTORS]
        categories += [Category(tenant=tenant, kind="region", name=r) for r in vocabulary.REGIONS]
        Category.objects.bulk_create(categories, ignore_conflicts=True)
        classify(tenant)


def classify(tenant: Tenant) -> dict[str, Classification]:
    """The tenant's classifications by category kind, created (and their kinds' categories
    filed under them) unless they exist."""
    Classification.objects.bulk_create(
        [Classification(tenant=tenant, name=name) for name in CLASSIFICATIONS.values()],
        ignore_conflicts=True,
    )
    by_name = {c.name: c for c in Classification.objects.filter(tenant=tenant)}
    by_kind = {kind: by_name[name] for kind, name in CLASSIFICATIONS.items()}
    for kind, classification in by_kind.items():
        Category.objects.filter(tenant=tenant, kind=kind, classification__isnull=True).update(
            classification=classification
        )
    return by_kind


def load(tenant: Tenant) -> Catalogue:
    ensure(tenant)
    types = {ct.name: ct for ct in ContentType.objects.filter(tenant=tenant)}
    fields: dict[str, dict[str, Field]] = {name: {} for name in types}
    by_type_id = {ct.id: ct.name for ct in types.values()}
    for item in Field.objects.filter(tenant=tenant).order_by("order"):
        fields[by_type_id[item.content_type_id]][item.api_identifier] = item
    catalogue = Catalogue(content_types=types, fields=fields)
    sector_names: dict[str, str] = {}
    company_sector = {name: sector for name, _, sector in _companies()}
    rows = Category.objects.filter(tenant=tenant).order_by("kind", "name")
    for category in rows:
        catalogue.categories.setdefault(category.kind, []).append(category.id)
        catalogue.names[category.id] = category.name
        if category.ticker:
            catalogue.tickers[category.id] = category.ticker
        if category.kind == "sector":
            sector_names[category.name] = category.id
    for category_id in catalogue.categories.get("entity", []):
        sector = company_sector.get(catalogue.names[category_id])
        if sector in sector_names:
            catalogue.sector_of[category_id] = sector_names[sector]
    return catalogue
