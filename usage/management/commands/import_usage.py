"""Import a usage file (CSV/JSONL records, New API log export, OpenAI usage export) with a progress bar."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from projects.models import ImportFormat, Organization, ProviderAccount
from usage.imports import (
    BadRow,
    ErrorReport,
    ImportAborted,
    ImportProgress,
    detect_format,
    import_dir,
    usage_import_stream,
)


class Command(BaseCommand):
    help = "Stream a usage file into an organization; bad rows go to an error report (line, column, reason)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--org", required=True, help="Organization slug.")
        parser.add_argument("--account", help="Provider account slug the rows belong to (prices, keys).")
        parser.add_argument("--format", choices=ImportFormat.values, help="Default: guessed from the file.")
        parser.add_argument(
            "--errors", type=Path, help="Error report path (default: under VAR_DIR/imports/)."
        )
        parser.add_argument("--quiet", action="store_true", help="No progress bar.")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
        org = Organization.objects.filter(slug=options["org"]).first()
        if org is None:
            raise CommandError(f"no organization {options['org']!r}")
        account = None
        if options["account"]:
            account = ProviderAccount.objects.filter(organization=org, slug=options["account"]).first()
            if account is None:
                raise CommandError(f"no provider account {options['account']!r} in {org.slug}")
        with path.open("rb") as raw:
            fmt = options["format"] or detect_format(raw.peek(4096)[:4096], path.name)
        errors_path = options["errors"] or import_dir() / f"cli-{timezone.now():%Y%m%dT%H%M%S}.errors.csv"
        total = path.stat().st_size
        started = time.monotonic()
        show = not options["quiet"]

        def bar(progress: ImportProgress) -> None:
            if not show:
                return
            share = progress.bytes_read / total if total else 1.0
            filled = int(share * 30)
            rate = progress.rows / max(time.monotonic() - started, 1e-6)
            sys.stderr.write(
                f"\r[{'#' * filled}{'.' * (30 - filled)}] {share:6.1%} {progress.rows:,} rows "
                f"({progress.bad:,} bad) {rate:,.0f} rows/s"
            )
            sys.stderr.flush()

        report = ErrorReport(errors_path)
        try:
            with path.open("rb") as raw:
                result = usage_import_stream(
                    organization=org, stream=raw, fmt=fmt, errors=report, account=account, on_progress=bar
                )
        except ImportAborted as exc:
            report.add(BadRow(1, "", str(exc)))
            raise CommandError(f"cannot import {path.name}: {exc}") from exc
        finally:
            report.close()
            if show:
                sys.stderr.write("\n")
        elapsed = time.monotonic() - started
        self.stdout.write(
            f"{fmt}: {result.rows:,} rows in {elapsed:.1f} s — {result.good:,} good "
            f"({result.new:,} new, {result.duplicates:,} already stored), {result.bad:,} bad"
        )
        if result.bad:
            self.stdout.write(f"error report: {errors_path}")
