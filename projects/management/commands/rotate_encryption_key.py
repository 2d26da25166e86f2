from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import models

from billing.models import AlertPolicy, Budget
from projects import encryption
from projects.models import ProviderAccount

# Every column that holds a Fernet token: (model, field).
ENCRYPTED_COLUMNS: list[tuple[type[models.Model], str]] = [
    (ProviderAccount, "credential_encrypted"),
    (AlertPolicy, "webhook_secret_encrypted"),
    (Budget, "webhook_secret_encrypted"),
]


class Command(BaseCommand):
    help = (
        "Re-encrypt stored secrets with the first key of QB_ENCRYPTION_KEYS. Idempotent and resumable: "
        "rows the first key already opens are skipped, and each row is written on its own, so a killed "
        "run loses nothing and the next run finishes the rest. Drop the old key only after a clean run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args: Any, **options: Any) -> None:
        encryption.reset_key_cache()
        for model, field in ENCRYPTED_COLUMNS:
            rotated = skipped = 0
            rows = model._default_manager.exclude(**{field: ""}).values_list("pk", field).order_by("pk")
            for pk, token in rows.iterator(chunk_size=options["batch_size"]):
                if encryption.is_current(token):
                    skipped += 1
                    continue
                # A token no configured key opens stops the run loudly (ImproperlyConfigured), never blanks it.
                new_token = encryption.rotate(token)
                # Compare-and-set: a row changed since we read it (e.g. a new credential saved) is left alone.
                rotated += model._default_manager.filter(pk=pk, **{field: token}).update(**{field: new_token})
            label = f"{model._meta.label}.{field}"
            self.stdout.write(f"{label}: {rotated} re-encrypted, {skipped} already current")
