"""Poll provider balances now (and New API top-up history): the twin of the scheduled balance task."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.services.balances import balance_poll_run
from billing.services.topups import topups_sync
from projects.models import AccountStatus, ProviderAccount
from usage.providers.registry import connector_class


class Command(BaseCommand):
    help = "Poll balances of provider accounts (all active ones by default) and sync New API top-ups."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", help="Account slug.")
        parser.add_argument("--org", help="Organization slug.")

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
        failed = 0
        for account in accounts:
            label = f"{account.organization.slug}/{account.slug}"
            if not connector_class(account.kind).has_balance:
                self.stdout.write(f"{label}: no balance API ({account.kind}), skipped")
                continue
            run = balance_poll_run(account=account)
            snapshots = getattr(run, "snapshots", [])
            shown = ", ".join(f"{s.remaining} {s.currency}" for s in snapshots) or "-"
            self.stdout.write(f"{label}: {run.status} {shown}" + (f" — {run.error}" if run.error else ""))
            failed += run.status == "failed"
            if run.status == "success" and connector_class(account.kind).has_topups:
                topup_run = topups_sync(account=account)
                self.stdout.write(
                    f"{label} top-ups: {topup_run.status}, {topup_run.rows_new} new, {topup_run.rows_updated} updated"
                )
        if failed:
            raise CommandError(f"{failed} account(s) failed; see the Data sources page")
