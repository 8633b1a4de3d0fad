"""A 50 MB attachment goes from Django's storage through a real Celery worker to the sandbox in
flat memory.

How memory is measured: the worker runs one pool process (concurrency 1), so the same process
delivers a 1 MB attachment and then a 50 MB one. Linux keeps each process's peak resident set
(``VmHWM``); the peak's growth from the first delivery to the second must stay far below the
file's size. A deliverer that read the file whole (or buffered the upload) would grow by at
least 50 MB; streamed 1 MiB chunks grow it by a few MB at most.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from pytest_django.fixtures import Settings

from accounts.models import Team
from bipsync_partner.writes import api
from tests.support.sandbox import Sandbox
from tests.sync.conftest import SyncWorld
from tests.writes.conftest import deliver_all, service_account, start_worker, statuses
from tests.writes.memory import peak_rss, pool_children

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MB = 1024 * 1024
SOURCE = "bipsync-partner"


def stored_file(settings: Settings, name: str, size: int) -> str:
    """A file of ``size`` random bytes in the storage, written in chunks; its SHA-256."""
    path = Path(settings.MEDIA_ROOT) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        for _ in range(size // MB):
            chunk = os.urandom(MB)
            digest.update(chunk)
            handle.write(chunk)
    assert default_storage.size(name) == size
    return digest.hexdigest()


def deliver_one(team: Team, world: SyncWorld, settings: Settings, value: str, size: int) -> str:
    checksum = stored_file(settings, f"big/{value}.bin", size)
    api.create_note(
        team,
        external_id=value,
        title=f"With {size // MB} MB",
        author=world.world.admin.id,
        attachments=[f"big/{value}.bin"],
    )
    deliver_all(team, timeout=120)
    return checksum


def test_a_50_mb_attachment_is_delivered_by_a_worker_in_flat_memory(
    partner: Settings, sandbox: Sandbox, world: SyncWorld, team: Team, tmp_path: Path
) -> None:
    service_account(team, world)
    worker = start_worker(sandbox, world, tmp_path, partner, concurrency=1)
    try:
        assert worker.process is not None
        [child] = pool_children(worker.process.pid)

        small_sum = deliver_one(team, world, partner, "small", 1 * MB)
        after_small = peak_rss(child)
        big_sum = deliver_one(team, world, partner, "big", 50 * MB)
        after_big = peak_rss(child)

        assert pool_children(worker.process.pid) == [child]  # the same process sent both
    finally:
        worker.stop()

    assert statuses(team) == {"delivered": 4}
    for value, size, checksum in (("small", MB, small_sum), ("big", 50 * MB, big_sum)):
        [note] = sandbox.notes_by_external_id(world.tenant, SOURCE, value)
        [sent] = note["attachments"]
        assert (sent["uploaded_size"], sent["sha256"]) == (size, checksum)
    growth = after_big - after_small
    print(
        f"worker peak RSS: {after_small / MB:.1f} MB after 1 MB, {after_big / MB:.1f} MB after 50 MB"
    )
    assert growth < 12 * MB, f"the worker's peak grew by {growth / MB:.1f} MB for a 50 MB file"
