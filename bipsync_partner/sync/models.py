"""What a research sync stores: schedules, runs with their checkpoints, and the synced tables.

A team's research is one row per Bipsync document per tenant (:class:`ResearchDocument`),
whichever and however many of the team's connections read it. Two connections to one tenant may
see different documents (a user connection sees what that person can see; a service account what
is shared with the partner app), so *which* connections see a document is recorded beside it,
one :class:`DocumentSighting` per (document, connection): visibility follows the sightings
(:mod:`bipsync_partner.sync.visibility`), a connection's deletion detection removes its own
sightings, and a document is marked deleted when no connection sees it any more.

Content types and fields stay one row per connection (:class:`SyncedContentType`,
:class:`SyncedField`): they are lists of tens of rows, read whole at the start of every run and
compared whole, and they are only ever shown as the filter's choices (deduplicated by id there).
Folding them per tenant would need the same sighting machinery for a few hundred rows a team.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import ClassVar

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models import ExpressionWrapper, F, Value
from django.db.models.functions import Coalesce, Upper
from django.utils import timezone

from bipsync_partner.connections.kinds import PERSONAL, SYNCED_BY_DEFAULT
from bipsync_partner.connections.models import Connection

#: How many schedule periods without a successful sync make a connection stale.
STALE_AFTER_PERIODS = 3


def default_interval() -> int:
    return int(settings.SYNC_DEFAULT_INTERVAL_SECONDS)


class TeamSyncSettings(models.Model):
    """A team's sync choices. Kept here rather than on ``accounts.Team`` so that accounts knows
    nothing about syncing (the data flow is one way)."""

    team = models.OneToOneField("accounts.Team", models.CASCADE, related_name="sync_settings")
    sync_user_connections = models.BooleanField(
        "Sync members' own connections",
        default=False,
        help_text=(
            "Off: only the team's service-account and machine connections sync. On: members' "
            "user connections sync too (each member then sees what Bipsync shows them)."
        ),
    )
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "team sync settings"
        verbose_name_plural = "team sync settings"

    def __str__(self) -> str:
        return f"Sync settings of {self.team}"


def syncable_connections(team_id: int | None = None) -> models.QuerySet[Connection]:
    """Connections that may sync: usable ones of a team-wide kind, plus personal ones of teams
    that enabled them."""
    personal_ok = TeamSyncSettings.objects.filter(sync_user_connections=True).values("team_id")
    qs = Connection.objects.filter(
        status__in=[Connection.Status.ACTIVE, Connection.Status.FAILING]
    ).filter(
        models.Q(kind__in=SYNCED_BY_DEFAULT) | models.Q(kind__in=PERSONAL, team_id__in=personal_ok)
    )
    if team_id is not None:
        qs = qs.filter(team_id=team_id)
    return qs


def may_sync(connection: Connection) -> bool:
    return syncable_connections(connection.team_id).filter(pk=connection.pk).exists()


class SyncScheduleQuerySet(models.QuerySet["SyncSchedule"]):
    def stale(self, now: datetime | None = None) -> SyncScheduleQuerySet:
        """Enabled schedules without a successful sync within three periods (in SQL, for the
        admin filter and the gauge)."""
        since = Coalesce(F("last_success_at"), F("created"))
        periods = ExpressionWrapper(
            Value(timedelta(seconds=STALE_AFTER_PERIODS)) * F("interval_seconds"),
            output_field=models.DurationField(),
        )
        cutoff = ExpressionWrapper(
            Value(now or timezone.now()) - periods, output_field=models.DateTimeField()
        )
        return (
            self.filter(enabled=True)
            .alias(since=since, cutoff=cutoff)
            .filter(since__lt=F("cutoff"))
        )


class SyncSchedule(models.Model):
    """When a connection syncs next. Beat only fires the sweep; the sweep reads these rows."""

    connection = models.OneToOneField(
        Connection, models.CASCADE, primary_key=True, related_name="sync_schedule"
    )
    enabled = models.BooleanField(default=True)
    interval_seconds = models.PositiveIntegerField(default=default_interval)
    next_due_at = models.DateTimeField(default=timezone.now, db_index=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now, editable=False)

    objects: ClassVar[SyncScheduleQuerySet] = SyncScheduleQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        ordering = ["next_due_at"]

    def __str__(self) -> str:
        return f"Sync schedule of connection {self.connection_id}"

    @property
    def interval(self) -> timedelta:
        return timedelta(seconds=self.interval_seconds)

    def is_stale(self, now: datetime | None = None) -> bool:
        """No successful sync within three schedule periods (since it was created, if never)."""
        if not self.enabled:
            return False
        since = self.last_success_at or self.created
        return since < (now or timezone.now()) - STALE_AFTER_PERIODS * self.interval


class SyncRun(models.Model):
    """One sync of one connection, with its checkpoint so that it can resume after a crash."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Sync now"

    UNFINISHED: ClassVar[tuple[str, ...]] = (Status.QUEUED, Status.RUNNING)

    connection = models.ForeignKey(Connection, models.CASCADE, related_name="sync_runs")
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.SCHEDULE)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)

    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    #: Last time a worker wrote progress; shows a stalled run in the admin.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    seen_count = models.PositiveIntegerField("seen", default=0)
    created_count = models.PositiveIntegerField("created", default=0)
    updated_count = models.PositiveIntegerField("updated", default=0)
    unchanged_count = models.PositiveIntegerField("unchanged", default=0)
    deleted_count = models.PositiveIntegerField("deleted", default=0)
    pages = models.PositiveIntegerField(default=0)
    total_reported = models.PositiveIntegerField(
        null=True, blank=True, help_text="The number of documents Bipsync reported."
    )
    content_types_count = models.PositiveIntegerField(default=0)
    fields_count = models.PositiveIntegerField(default=0)
    rate_limited_count = models.PositiveIntegerField(
        default=0, help_text="Answers where Bipsync asked us to slow down (429)."
    )

    # The checkpoint: the offset of the next page to read, the last id read (the anchor the next
    # page must start with), and the scan it belongs to. Pages before next_offset are committed
    # (documents and their ids in ScanPage) in one transaction each, so a restarted run
    # continues here with the same scan id.
    scan_id = models.UUIDField(default=uuid.uuid4, editable=False)
    next_offset = models.PositiveIntegerField(default=0)
    anchor_id = models.CharField(max_length=24, blank=True)
    scan_unstable = models.BooleanField(
        default=False,
        help_text="The list shifted under the scan in a way it could not realign; no deletions.",
    )
    #: Decided when the run reads its first page and kept with the checkpoint, so that a resumed
    #: slice decides the same way: the connection had no stored documents when the run began.
    #: Every stored row is then one this scan saw, so nothing can be marked deleted and the
    #: scan's ids are not recorded (no ScanPage rows), nor are stored hashes looked up.
    first_scan = models.BooleanField(
        default=False,
        help_text="The connection saw no synced documents when the run began.",
    )
    #: Decided with ``first_scan``: the team had no document of the tenant at all (no other
    #: connection had synced it), so the scan's rows are all new: no stored hashes to look up,
    #: and a page is a plain insert. A second connection's first scan of a synced tenant looks
    #: the documents up and writes only its sightings.
    tenant_was_empty = models.BooleanField(
        default=False,
        help_text="The team had no synced documents of this tenant when the run began.",
    )

    #: Listing items the scan went past without reading them as documents (no valid id, or
    #: inserted ahead of its position while it ran): with the ids it saw, they must add up to
    #: the total Bipsync reported for the scan to count as complete.
    passed_count = models.PositiveIntegerField(
        default=0,
        help_text="Listing items passed without a document id, or inserted behind the scan.",
    )
    #: A complete scan would have marked more than SYNC_CONFIRM_DELETIONS_PERCENT of the stored
    #: documents deleted; the run is reading the list a second time, and only what neither scan
    #: saw is marked deleted.
    confirming_deletions = models.BooleanField(
        default=False,
        help_text="Reading the list a second time before marking many documents deleted.",
    )

    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Transient failures so far (Bipsync unavailable, rate limited...)."
    )
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(
        blank=True, help_text="What went wrong, in a sentence; or why the run is waiting."
    )
    notes = models.TextField(blank=True)
    #: The GraphQL resources read after the research (bipsync_partner/sync/resources.py): per
    #: resource name, its state ("reading", "done", "skipped"), counts and scan checkpoint.
    resources = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-queued_at", "-id"]
        constraints = [
            # One unfinished run per connection, whatever the number of sweeps and buttons.
            models.UniqueConstraint(
                fields=["connection"],
                condition=models.Q(status__in=["queued", "running"]),
                name="one_unfinished_sync_run_per_connection",
            )
        ]
        indexes = [
            models.Index(fields=["connection", "-queued_at"], name="sync_run_history"),
            models.Index(fields=["status"], name="sync_run_status"),
        ]

    def __str__(self) -> str:
        return f"Sync run {self.pk} of connection {self.connection_id} ({self.status})"

    def add_note(self, sentence: str) -> None:
        """Append a sentence to the run's notes (saved with the run)."""
        self.notes = f"{self.notes} {sentence}".strip()

    @property
    def is_finished(self) -> bool:
        return self.status not in self.UNFINISHED

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    @property
    def duration_text(self) -> str:
        """How long the run took (or has taken), for people: "0.5 s", "2 min 05 s", "1 h 02 min"."""
        if self.duration is None:
            return ""
        seconds = self.duration.total_seconds()
        if seconds < 60:
            return f"{seconds:.1f} s"
        minutes, secs = divmod(int(seconds), 60)
        if minutes < 60:
            return f"{minutes} min {secs:02d} s"
        hours, minutes = divmod(minutes, 60)
        return f"{hours} h {minutes:02d} min"

    @property
    def progress_max(self) -> int | None:
        return self.total_reported

    def progress_dict(self) -> dict[str, object]:
        return {
            "id": self.pk,
            "status": self.status,
            "status_display": self.get_status_display(),
            "seen": self.seen_count,
            "total": self.total_reported,
            "created": self.created_count,
            "updated": self.updated_count,
            "unchanged": self.unchanged_count,
            "deleted": self.deleted_count,
            "pages": self.pages,
            "error": self.error_message,
            "finished": self.is_finished,
            "resources": self.resource_progress(),
        }

    def resource_progress(self) -> list[dict[str, object]]:
        """What the run read of each resource so far, for the history page and its progress."""
        return [
            {
                "name": name,
                "state": state.get("state", ""),
                "seen": state.get("seen", 0),
                "rows": state.get("rows", 0),
                "total": state.get("total"),
                "created": state.get("created", 0),
                "updated": state.get("updated", 0),
                "deleted": state.get("deleted", 0),
            }
            for name, state in self.resources.items()
        ]


class ScanPage(models.Model):
    """The Bipsync ids one page of a scan saw, written with the page's checkpoint.

    Deletion detection needs the set of ids a complete scan saw. Keeping it here, one row per
    page, instead of stamping every document row with the scan id, means an unchanged document
    is never written (no row versions, no WAL, no bloat for an hourly re-sync of 100,000
    documents), and the set survives a crash with the checkpoint it belongs to. Rows are deleted
    when the run ends.
    """

    run = models.ForeignKey(SyncRun, models.CASCADE, related_name="scan_pages")
    seq = models.PositiveIntegerField(help_text="The page's number in the run, from 1.")
    offset = models.PositiveIntegerField()
    ids = ArrayField(models.CharField(max_length=24))

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="one_scan_page_per_seq")]

    def __str__(self) -> str:
        return f"Page {self.seq} (offset {self.offset}) of run {self.run_id}"


class SyncedRow(models.Model):
    """Columns every synced table shares."""

    connection = models.ForeignKey(Connection, models.CASCADE, related_name="+")
    team = models.ForeignKey("accounts.Team", models.CASCADE, related_name="+")
    tenant = models.CharField(max_length=63)
    bipsync_id = models.CharField("Bipsync id", max_length=24)
    content_hash = models.CharField(max_length=64)
    first_synced_at = models.DateTimeField(default=timezone.now)
    changed_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class SyncedContentType(SyncedRow):
    name = models.CharField(max_length=200, blank=True)
    display_name = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["display_name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "bipsync_id"], name="one_content_type_per_connection"
            )
        ]

    def __str__(self) -> str:
        return self.display_name or self.name or self.bipsync_id


class SyncedField(SyncedRow):
    api_identifier = models.CharField(max_length=200, blank=True)
    name = models.CharField(max_length=200, blank=True)
    field_type = models.CharField(max_length=64, blank=True)
    options = models.JSONField(default=list, blank=True)
    content_type_bid = models.CharField("content type", max_length=64, blank=True)
    order = models.IntegerField(null=True, blank=True)
    disabled = models.BooleanField(default=False)

    class Meta:
        ordering = ["content_type_bid", "order", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "bipsync_id"], name="one_field_per_connection"
            )
        ]

    def __str__(self) -> str:
        return self.name or self.api_identifier or self.bipsync_id


_LIVE = models.Q(deleted_at__isnull=True)

#: The research browser's indexes (bipsync_partner/sync/browse.py), all on live rows only: its
#: order (newest first, the primary key breaking ties) alone and after each filter, the loose
#: scan of authors and their names, and the trigram index that "title contains" uses (the
#: browser searches with ``title ILIKE …``, which the index serves). The ordered ones carry the
#: title, so that a search within the order or a filter is checked in the index and only the
#: rows shown are read from the table (browse.py reads a page's ids first, then their rows).
BROWSER_INDEXES = [
    models.Index(
        "team",
        F("bipsync_modified").desc(),
        F("id").desc(),
        condition=_LIVE,
        include=["title"],
        name="research_recent",
    ),
    models.Index(
        "team",
        "content_type_bid",
        F("bipsync_modified").desc(),
        F("id").desc(),
        condition=_LIVE,
        include=["title"],
        name="research_by_type",
    ),
    models.Index(
        "team",
        "author_bid",
        F("bipsync_modified").desc(),
        F("id").desc(),
        condition=_LIVE,
        include=["title"],
        name="research_by_author",
    ),
    models.Index(
        fields=["team", "author_bid", "author_name"],
        condition=_LIVE & ~models.Q(author_name=""),
        name="research_author_names",
    ),
    GinIndex(
        fields=["title"], opclasses=["gin_trgm_ops"], condition=_LIVE, name="research_title_trgm"
    ),
]


class ResearchDocumentQuerySet(models.QuerySet["ResearchDocument"]):
    def seen_by(self, connection: Connection | uuid.UUID | str) -> ResearchDocumentQuerySet:
        """The documents the connection sees (has a sighting of)."""
        connection_id = connection.pk if isinstance(connection, Connection) else connection
        seen = DocumentSighting.objects.filter(
            document=models.OuterRef("pk"), connection_id=connection_id
        )
        return self.filter(models.Exists(seen))


class ResearchDocument(models.Model):
    """A research document (note or file) as Bipsync's ``GET /v1/research`` lists it: one row per
    document per tenant of a team, whichever of the team's connections read it.

    The row holds the newest view any connection brought: a connection's view replaces it only
    when Bipsync's ``modified`` is later, or when it is the view of the connection that wrote
    the row (its own document changed without a new ``modified``), or when the row was marked
    deleted (the document came back). An older view from another connection never overwrites a
    newer one.
    """

    # Every index costs each of a first sync's 100,000 inserts, so none that another serves: the
    # unique (team, tenant, bipsync_id) one leads with the team and serves the team's cascade,
    # BROWSER_INDEXES the browser (research_recent, on live rows in the browser's order, took
    # over from an index on (team, deleted_at, modified) that no query used any more).
    #
    # The team is the connection's, and the database does not check it (Postgres checks a
    # foreign key row by row; this one cost a fifth of each page's insert, 1 of 5 ms per 100
    # rows): connections only ever write rows of their own team. A team's deletion removes its
    # research in three statements once its connections are locked
    # (bipsync_partner.sync.receivers), rather than Django collecting every document first.
    team = models.ForeignKey(
        "accounts.Team", models.DO_NOTHING, related_name="+", db_index=False, db_constraint=False
    )
    tenant = models.CharField(max_length=63)
    bipsync_id = models.CharField("Bipsync id", max_length=24)
    #: The connection whose view the row holds (compared with the writer of a view of the same
    #: ``modified``); a plain id, not checked nor cascaded, as it is never followed.
    source_connection = models.ForeignKey(
        Connection,
        models.DO_NOTHING,
        related_name="+",
        db_index=False,
        db_constraint=False,
        null=True,
        blank=True,
    )
    content_hash = models.CharField(max_length=64)
    first_synced_at = models.DateTimeField(default=timezone.now)
    changed_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="Set when no connection of the team sees it any more."
    )
    title = models.TextField(blank=True)
    content_type_bid = models.CharField("content type", max_length=64, blank=True)
    author_bid = models.CharField("author id", max_length=64, blank=True)
    author_name = models.CharField("author", max_length=200, blank=True)
    lookup_fields = models.JSONField(
        default=dict, blank=True, help_text="Bipsync's fields; lookups hold category ids."
    )
    bipsync_created = models.DateTimeField(null=True, blank=True)
    bipsync_modified = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[ResearchDocumentQuerySet] = ResearchDocumentQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        ordering = ["-bipsync_modified", "bipsync_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "tenant", "bipsync_id"], name="one_document_per_tenant"
            )
        ]
        indexes = BROWSER_INDEXES

    def __str__(self) -> str:
        return self.title or self.bipsync_id

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class DocumentSighting(models.Model):
    """A connection sees a document: what makes the document visible, and to whom.

    Written once, when a connection first sees the document (a re-sync that sees it again
    writes nothing; the ids each scan saw are in :class:`ScanPage`), and deleted when a complete
    scan of that connection no longer sees it, or when the connection is disconnected.

    The primary key (document, connection) is the index the visibility rule probes ("does one
    of these connections see this document"); the second index serves "this connection's
    sightings" (deletion detection, disconnect).

    The database checks neither foreign key: PostgreSQL checks one row by row (a locked look-up
    per sighting), and the two cost a sixth of a first sync (bench/README.md). What the checks
    guarded is kept by locks instead, each taken once: the page statement locks its connection
    and the stored documents it sights ``FOR KEY SHARE`` (:mod:`bipsync_partner.sync.engine.sql`),
    and whatever removes a connection or a document locks it ``FOR UPDATE`` before removing its
    sightings (:mod:`bipsync_partner.sync.exposure`, :mod:`bipsync_partner.sync.receivers`), so
    that a sighting never outlives the rows it names. Django still cascades deletions to them.
    """

    pk = models.CompositePrimaryKey("document", "connection")
    document = models.ForeignKey(
        ResearchDocument,
        models.CASCADE,
        related_name="sightings",
        db_index=False,
        db_constraint=False,
    )
    connection = models.ForeignKey(
        Connection, models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    first_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["connection", "document"], name="sighting_by_connection")]

    def __str__(self) -> str:
        return f"Document {self.document_id} seen by connection {self.connection_id}"


class DocumentChange(models.Model):
    """A change a sync saw in a document: what changed (before and after), when, and through
    which connection. Written by the page statement when it updates a row (never for a row it
    inserts or leaves alone), and when a document is marked deleted."""

    document = models.ForeignKey(
        ResearchDocument, models.CASCADE, related_name="changes", db_index=False
    )
    connection = models.ForeignKey(
        Connection, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    seen_at = models.DateTimeField(default=timezone.now)
    #: ``{"title": [before, after], "fields": {key: [before, after]}, "deleted": true, ...}``
    changes = models.JSONField(default=dict)

    class Meta:
        ordering = ["-seen_at", "-id"]
        indexes = [models.Index(fields=["document", "-seen_at"], name="document_history")]

    def __str__(self) -> str:
        return f"Change of document {self.document_id} at {self.seen_at:%Y-%m-%d %H:%M}"


# --- resources read through GraphQL -------------------------------------------------------------


class TenantRow(models.Model):
    """Columns of a row read through Bipsync's GraphQL (bipsync_partner/sync/resources.py): one
    row per Bipsync id per tenant of a team, like :class:`ResearchDocument`.

    ``source_connection`` is the connection whose scan wrote the row last; a complete scan of a
    connection marks deleted only the rows it wrote (or whose writer was disconnected), so a
    connection that sees less (a member's own) never removes what another one brought.
    """

    team = models.ForeignKey(
        "accounts.Team", models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    tenant = models.CharField(max_length=63)
    bipsync_id = models.CharField("Bipsync id", max_length=24)
    source_connection = models.ForeignKey(
        Connection,
        models.SET_NULL,
        related_name="+",
        db_index=False,
        db_constraint=False,
        null=True,
        blank=True,
    )
    content_hash = models.CharField(max_length=64)
    first_synced_at = models.DateTimeField(default=timezone.now)
    changed_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


def _one_per_tenant(name: str) -> list[models.BaseConstraint]:
    return [models.UniqueConstraint(fields=["team", "tenant", "bipsync_id"], name=name)]


class SyncedUser(TenantRow):
    """A Bipsync user (GraphQL ``users``): authors are shown by name."""

    name = models.CharField(max_length=200, blank=True)
    email = models.CharField(max_length=254, blank=True)

    class Meta:
        constraints = _one_per_tenant("one_synced_user_per_tenant")

    def __str__(self) -> str:
        return self.name or self.email or self.bipsync_id


class SyncedClassification(TenantRow):
    """What kind of entity a category is (GraphQL ``classifications``)."""

    name = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = _one_per_tenant("one_synced_classification_per_tenant")

    def __str__(self) -> str:
        return self.name or self.bipsync_id


class SyncedCategory(TenantRow):
    """A company or other entity research is tagged with (GraphQL ``categories``); lookup fields
    hold these ids (docs/bipsync.md, "Categories")."""

    name = models.CharField(max_length=200, blank=True)
    ticker = models.CharField(max_length=32, blank=True)
    classification_bid = models.CharField("classification", max_length=24, blank=True)
    external_ids = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = _one_per_tenant("one_synced_category_per_tenant")
        indexes = [
            # The research browser's company filter: by ticker or by name, ignoring case.
            models.Index("team", Upper("ticker"), name="category_by_ticker"),
            models.Index("team", Upper("name"), name="category_by_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.ticker})" if self.ticker else self.name or self.bipsync_id


class SyncedContact(TenantRow):
    """A contact (GraphQL ``contacts``)."""

    name = models.CharField(max_length=200, blank=True)
    email = models.CharField(max_length=254, blank=True)
    external_ids = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = _one_per_tenant("one_synced_contact_per_tenant")

    def __str__(self) -> str:
        return self.name or self.email or self.bipsync_id


class SyncedProject(TenantRow):
    """A project (GraphQL ``projects``)."""

    name = models.CharField(max_length=200, blank=True)
    stage = models.CharField(max_length=200, blank=True)
    external_ids = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = _one_per_tenant("one_synced_project_per_tenant")

    def __str__(self) -> str:
        return self.name or self.bipsync_id


class NoteBody(TenantRow):
    """A note's HTML body (GraphQL ``research { content }``), keyed by the document's Bipsync
    id. Stored as Bipsync sends it; the document page sanitises it when it shows it
    (bipsync_partner/sync/html.py), so a change of the allow-list applies to every body."""

    content = models.TextField(blank=True)

    class Meta:
        constraints = _one_per_tenant("one_note_body_per_tenant")

    def __str__(self) -> str:
        return f"Body of note {self.bipsync_id}"


class SyncedAttachment(TenantRow):
    """An attachment's metadata (GraphQL ``research { attachments }``); its bytes are read from
    Bipsync when someone downloads it, never stored here."""

    document_bid = models.CharField("document", max_length=24)
    file_name = models.CharField(max_length=500, blank=True)
    length = models.BigIntegerField(null=True, blank=True)
    content_type = models.CharField(max_length=200, blank=True)
    bipsync_created = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["file_name", "bipsync_id"]
        constraints = _one_per_tenant("one_synced_attachment_per_tenant")
        indexes = [
            models.Index(fields=["team", "tenant", "document_bid"], name="attachment_by_document")
        ]

    def __str__(self) -> str:
        return self.file_name or self.bipsync_id


class ResourceScanPage(models.Model):
    """The Bipsync ids one page of a resource's scan saw (as :class:`ScanPage` for research):
    a complete scan marks deleted what none of its pages saw. Deleted when the scan ends."""

    run = models.ForeignKey(SyncRun, models.CASCADE, related_name="resource_pages")
    resource = models.CharField(max_length=32)
    seq = models.PositiveIntegerField()
    ids = ArrayField(models.CharField(max_length=24))

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "resource", "seq"], name="one_resource_page_per_seq"
            )
        ]

    def __str__(self) -> str:
        return f"Page {self.seq} of {self.resource} in run {self.run_id}"
