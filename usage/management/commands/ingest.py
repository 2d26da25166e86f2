"""Ingest usage from provider accounts now: the management-command twin of the Celery ingest task."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from projects.models import AccountStatus, ProviderAccount
from usage import ingest
from usage.providers.registry import connector_class


def _day_start(value: str) -> datetime:
    try:
        return datetime.combine(date.fromisoformat(value), time.min, tzinfo=UTC)
    except ValueError as exc:
        raise CommandError(f"not a date (YYYY-MM-DD): {value!r}") from exc


class Command(BaseCommand):
    help = (
        "Ingest usage for provider accounts (all active ones by default). Without --since it reads "
        "from each stream's cursor minus the overlap, like the scheduled task."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", help="Account slug (with --org when slugs repeat across orgs).")
        parser.add_argument("--org", help="Organization slug.")
        parser.add_argument("--since", help="UTC date YYYY-MM-DD: read [since, until) instead of the cursor.")
        parser.add_argument("--until", help="UTC date YYYY-MM-DD (exclusive); default now.")

    def handle(self, *args: Any, **options: Any) -> None:
        accounts = ProviderAccount.objects.select_related("organization").order_by(
            "organization__slug", "slug"
        )
        if options["org"]:
            accounts = accounts.filter(organization__slug=options["org"])
        if options["account"]:
            accounts = accounts.filter(slug=options["account"])
        else:
            accounts = accounts.filter(status=AccountStatus.ACTIVE)
        if not accounts:
            raise CommandError("no matching provider account")
        start = _day_start(options["since"]) if options["since"] else None
        end = _day_start(options["until"]) if options["until"] else timezone.now()
        failed = 0
        for account in accounts:
            if not connector_class(account.kind).has_usage:
                self.stdout.write(
                    f"{account.organization.slug}/{account.slug}: no usage API ({account.kind}), skipped"
                )
                continue
            label = f"{account.organization.slug}/{account.slug}"
            progress = _ProgressBar(label) if sys.stderr.isatty() else None
            if start is not None:
                run = ingest.usage_ingest_window(account=account, start=start, end=end, progress=progress)
            else:
                run = ingest.usage_ingest_account(account=account)
            if progress:
                progress.finish()
            failed += run.status == "failed"
            self.stdout.write(f"{label}: {ingest.ingest_account_summary(run)}")
        if failed:
            raise CommandError(f"{failed} account(s) failed; see the Data sources page")


class _ProgressBar:
    """A one-line terminal progress bar over the window's chunks (stderr, only on a terminal)."""

    width = 30

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = timezone.now()

    def __call__(self, done: int, total: int, rows: int) -> None:
        filled = self.width * done // max(total, 1)
        elapsed = (timezone.now() - self.started) / timedelta(seconds=1)
        sys.stderr.write(
            f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} chunks, "
            f"{rows:,} rows, {elapsed:.0f}s"
        )
        sys.stderr.flush()

    def finish(self) -> None:
        sys.stderr.write("\n")
