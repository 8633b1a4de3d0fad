"""Content types and fields: small lists, read whole at the start of a run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bipsync_partner.sync.api import BipsyncApi, InsufficientScope
from bipsync_partner.sync.engine.hashing import content_hash
from bipsync_partner.sync.engine.items import (
    ContentTypeItem,
    FieldItem,
    Item,
    content_type_columns,
    field_columns,
    parse,
    valid_id,
)
from bipsync_partner.sync.models import SyncedContentType, SyncedField, SyncRun

CONTENT_TYPE_PATH = "/v1/contenttype"
FIELD_PATH = "/v1/field"


def _sync_small_table(
    model: type[SyncedContentType] | type[SyncedField],
    run: SyncRun,
    items: list[dict[str, Any]],
    schema: type[Item],
    build: Callable[[Item], dict[str, Any]],
) -> int:
    """Upsert the list's new and changed rows and mark deleted the stored ones it no longer
    names; how many distinct ids it named. An item that does not fit ``schema`` is not written,
    and a stored copy of it stays live (it is in the list)."""
    now = timezone.now()
    conn = run.connection
    known = {
        bid: (digest, deleted_at)
        for bid, digest, deleted_at in model.objects.filter(connection=conn).values_list(
            "bipsync_id", "content_hash", "deleted_at"
        )
    }
    seen: set[str] = set()
    rows = []
    for item in items:
        bid = valid_id(item.get("id"))
        if bid is None or bid in seen:
            continue
        seen.add(bid)
        digest = content_hash(item)
        previous = known.get(bid)
        if previous is not None and previous[0] == digest and previous[1] is None:
            continue
        parsed = parse(schema, item, near=0)
        if parsed is None:
            continue
        rows.append(
            model(
                connection=conn,
                team_id=conn.team_id,
                tenant=conn.tenant,
                bipsync_id=bid,
                content_hash=digest,
                first_synced_at=now,
                changed_at=now,
                deleted_at=None,
                **build(parsed),
            )
        )
    with transaction.atomic():
        if rows:
            update_fields = [
                f.name
                for f in model._meta.concrete_fields
                if f.name not in {"id", "connection", "bipsync_id", "first_synced_at"}
            ]
            model.objects.bulk_create(
                rows,  # type: ignore[arg-type]
                update_conflicts=True,
                unique_fields=["connection", "bipsync_id"],
                update_fields=update_fields,
            )
        gone = [bid for bid, (_, deleted_at) in known.items() if bid not in seen and not deleted_at]
        if gone and not seen:
            # As for documents: an empty list where rows are stored is more often a fault than
            # a tenant without content types; the rows stay until a list names others.
            run.add_note(
                f"Bipsync listed no {model._meta.verbose_name_plural}; the {len(gone)} stored "
                "are kept.",
            )
            run.save(update_fields=["notes"])
        elif gone:
            model.objects.filter(connection=conn, bipsync_id__in=gone).update(
                deleted_at=now, changed_at=now
            )
    return len(seen)


def sync_metadata(run: SyncRun, api: BipsyncApi) -> None:
    limit = settings.SYNC_PAGE_SIZE
    run.content_types_count = _sync_small_table(
        SyncedContentType,
        run,
        api.all_items(CONTENT_TYPE_PATH, limit=limit),
        ContentTypeItem,
        content_type_columns,
    )
    try:
        fields = api.all_items(FIELD_PATH, limit=limit)
    except InsufficientScope:
        # /v1/field needs rest_api:fields:read (docs/bipsync.md, "Scopes"); documents sync
        # without it, so its absence is a note, not a failure.
        run.notes = "Fields were not synced: the grant lacks the rest_api:fields:read scope."
        run.save(update_fields=["notes"])
    else:
        run.fields_count = _sync_small_table(SyncedField, run, fields, FieldItem, field_columns)
    run.heartbeat_at = timezone.now()
    run.save(update_fields=["content_types_count", "fields_count", "heartbeat_at"])
