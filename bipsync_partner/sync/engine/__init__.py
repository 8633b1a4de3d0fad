"""The research sync engine: one run of one connection, resumable, writing only what changed.

Bipsync documents no modified-since filter (docs/bipsync.md, "The REST API slice"), so a run
reads every page of ``GET /v1/research`` (100 per page), and

- hashes each item (SHA-256 of its canonical JSON) and writes only rows that are new, changed or
  come back from deletion, in one bulk upsert per page; an unchanged re-sync writes no document row;
- records the ids each page saw (:class:`~bipsync_partner.sync.models.ScanPage`) in the same
  transaction as the page's rows and the run's checkpoint (next offset, counts), so a run killed
  at any point resumes at the first page it had not committed, with the same scan id;
- marks as deleted, only after the last page of a *complete* scan, the rows the scan did not see
  (a connection's first scan, which finds nothing stored, records no ids and deletes nothing:
  every row it stores is one it saw). Complete means the last page ends at the total Bipsync
  reported (else the run waits and reads on from its checkpoint) and the ids seen, with the
  items the scan knowingly went past, add up to that total. An empty list where documents are
  stored fails the run unless the previous run found it empty too; a deletion of more than
  ``SYNC_CONFIRM_DELETIONS_PERCENT`` of the stored documents waits for a second scan of the
  list in the same run, and only what neither scan saw is marked deleted
  (:func:`~.deletions.decide_deletions`);
- keeps each page aligned with the last id it read (:func:`~.paging.scan`), so a list that
  changes during the scan cannot make it skip documents unnoticed;
- holds one page at a time (and prefetches at most one more), so memory does not grow with the
  number of documents.

One run per connection at a time (:mod:`.lock`). One module per concern:

- :mod:`.slices`: a slice of a run (lock, tenant slot, session settings, the page loop);
- :mod:`.paging`: reading the listing aligned, to its reported end; :mod:`.prefetch` reads ahead;
- :mod:`.items`: Bipsync's items, parsed by one strict schema, into the columns of rows;
- :mod:`.hashing`: the content hash; :mod:`.pages`: storing one page; :mod:`.sql`: its statement,
  built from the models' metadata;
- :mod:`.metadata`: content types and fields; :mod:`.deletions`: deletion detection;
- :mod:`.runs`: the run's bookkeeping (finish, fail, retry, pause, crash); :mod:`.outcomes`;
  :mod:`.statistics`: the planner's statistics, refreshed after a run by a task.

The names below are the engine's interface to the tasks, the scheduler and the tests.
"""

from bipsync_partner.sync.engine import runs, statistics
from bipsync_partner.sync.engine.deletions import EmptyListing, mark_deleted
from bipsync_partner.sync.engine.hashing import content_hash
from bipsync_partner.sync.engine.items import document_row
from bipsync_partner.sync.engine.lock import lock_is_free, lock_key, run_lock
from bipsync_partner.sync.engine.metadata import sync_metadata
from bipsync_partner.sync.engine.outcomes import CONTINUE, DONE, RETRY, Outcome, SliceOver
from bipsync_partner.sync.engine.pages import store_page
from bipsync_partner.sync.engine.paging import RESEARCH_PATH, Step, scan
from bipsync_partner.sync.engine.prefetch import PREFETCH_PAGES
from bipsync_partner.sync.engine.results import PageResult
from bipsync_partner.sync.engine.runs import fail, finish, record_crash
from bipsync_partner.sync.engine.slices import ApiFactory, execute

__all__ = [
    "CONTINUE",
    "DONE",
    "PREFETCH_PAGES",
    "RESEARCH_PATH",
    "RETRY",
    "ApiFactory",
    "EmptyListing",
    "Outcome",
    "PageResult",
    "SliceOver",
    "Step",
    "content_hash",
    "document_row",
    "execute",
    "fail",
    "finish",
    "lock_is_free",
    "lock_key",
    "mark_deleted",
    "record_crash",
    "run_lock",
    "runs",
    "scan",
    "statistics",
    "store_page",
    "sync_metadata",
]
