"""Twin of the ``dispatch_month_summaries`` beat task: e-mail a month's cost summary to finance now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from billing import rules
from billing.review import parse_month
from billing.services.summaries import month_summary_send
from projects.models import Organization


class Command(BaseCommand):
    help = "E-mail last month's (or --month's) cost summary to each organization's finance members."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", help="Organization slug (default: all).")
        parser.add_argument("--month", help="YYYY-MM (default: last month in each organization's zone).")
        parser.add_argument(
            "--once", action="store_true", help="Skip organizations already e-mailed for the month."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        month = parse_month(options["month"]) if options["month"] else None
        if options["month"] and month is None:
            raise CommandError("--month must be YYYY-MM")
        organizations = Organization.objects.all()
        if options["org"]:
            organizations = organizations.filter(slug=options["org"])
            if not organizations.exists():
                raise CommandError(f"no organization {options['org']!r}")
        for organization in organizations:
            today = timezone.now().astimezone(organization.zoneinfo).date()
            chosen = month or rules.add_months(today, -1)
            sent = month_summary_send(
                organization=organization, month=chosen, today=today, force=not options["once"]
            )
            self.stdout.write(f"{organization.slug} {chosen:%Y-%m}: e-mailed {sent} finance member(s)")
