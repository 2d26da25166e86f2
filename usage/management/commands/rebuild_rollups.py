from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from projects.models import Organization
from usage.services import rollup_rebuild


class Command(BaseCommand):
    help = "Recompute daily and hourly rollups from raw usage records (twin of usage.tasks.rebuild_rollups)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", help="Organization slug; default: every organization.")
        parser.add_argument(
            "--since", type=date.fromisoformat, help="First local day to rebuild (YYYY-MM-DD)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        orgs = Organization.objects.all()
        if options["org"]:
            orgs = orgs.filter(slug=options["org"])
            if not orgs.exists():
                raise CommandError(f"No organization with slug {options['org']!r}")
        for org in orgs:
            written = rollup_rebuild(organization=org, since=options["since"])
            self.stdout.write(f"{org.slug}: {written} daily rollup rows")
