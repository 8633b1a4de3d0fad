"""``manage.py rotate_token_keys``: re-encrypt every stored secret with the current key.

Rotating a key: put the new key first in ``TOKEN_ENCRYPTION_KEYS`` (keep the old one after it),
deploy, run this command, then remove the old key. It runs while the app runs:

- rows are read in primary-key batches without decrypting; only rows with a secret on an older
  key are touched, so a second run (or a run after an interruption) does nothing more;
- each such row is then locked (``SELECT ... FOR UPDATE``) and re-read, so a refresh that
  committed new tokens a moment ago is re-encrypted, never overwritten with the tokens read
  earlier; a refresh in progress holds the same lock, and the row simply waits for it;
- only the encrypted columns are written, and the connection's history gets a ``key_rotated``
  event.

A secret whose key is no longer configured cannot be re-encrypted: it is reported by row id (and
left alone), and the command ends with an error so that the old key is not removed too early.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from tqdm import tqdm

from bipsync_partner.connections import crypto
from bipsync_partner.connections.fields import EncryptedModel


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored token and secret with the first key of TOKEN_ENCRYPTION_KEYS, "
        "in batches, while the app keeps running."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=500,
            help="Rows read per batch (default 500).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size: int = options["batch_size"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            key_id = crypto.keyring().current.key_id
        except crypto.EncryptionError as exc:
            raise CommandError(str(exc)) from None
        show_progress = options["verbosity"] > 0
        rotated = current = 0
        failed: list[str] = []
        for model in _models_with_secrets():
            label = model._meta.label
            total = model._base_manager.count()
            with tqdm(
                total=total,
                desc=label,
                unit="row",
                file=self.stderr,
                disable=not show_progress,
            ) as bar:
                for batch in _batches(model, batch_size):
                    for row in batch:
                        if not row.secrets_on_old_keys():
                            current += 1
                        elif _rotate_row(model, row.pk, key_id):
                            rotated += 1
                        else:
                            failed.append(f"{label} {row.pk}")
                    bar.update(len(batch))
        self.stdout.write(
            f"Re-encrypted {rotated} row(s) with key {key_id}; {current} row(s) were already on it."
        )
        if failed:
            raise CommandError(
                f"{len(failed)} row(s) hold secrets under a key that is not in "
                f"TOKEN_ENCRYPTION_KEYS and were left as they are: {', '.join(failed[:20])}"
                + (" ..." if len(failed) > 20 else "")
                + ". Put the missing key back (after the first) before removing any key."
            )
        self.stdout.write(self.style.SUCCESS("Every stored secret is on the current key."))


def _models_with_secrets() -> list[type[EncryptedModel]]:
    return [
        model
        for model in apps.get_models()
        if issubclass(model, EncryptedModel) and model.get_encrypted_fields()
    ]


def _batches(model: type[EncryptedModel], size: int) -> Iterator[list[EncryptedModel]]:
    """Rows in primary-key order, ``size`` at a time (keyset paging: no OFFSET, no long
    transaction, rows inserted meanwhile are still visited if their key sorts later)."""
    last_pk = None
    while True:
        queryset = model._base_manager.order_by("pk")
        if last_pk is not None:
            queryset = queryset.filter(pk__gt=last_pk)
        batch = list(queryset[:size])
        if not batch:
            return
        yield batch
        last_pk = batch[-1].pk


def _rotate_row(model: type[EncryptedModel], pk: Any, key_id: str) -> bool:
    """Lock the row, re-read it, re-encrypt what is on an older key. False if a secret cannot be
    decrypted with any configured key."""
    with transaction.atomic():
        row = model._base_manager.select_for_update(of=("self",)).filter(pk=pk).first()
        if row is None:
            return True  # deleted meanwhile: nothing left to protect
        try:
            changed = row.reencrypt_secrets()
        except crypto.DecryptionError:
            return False
        if changed:
            row.save(update_fields=changed)
            row.secrets_reencrypted(key_id)
    return True
