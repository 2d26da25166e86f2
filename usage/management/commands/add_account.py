"""Add a provider account. The credential comes from $QB_CREDENTIAL or stdin, never from argv
(argv is visible to every user on the machine in ``ps`` and lands in shell history)."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.text import slugify

from projects.models import Organization, ProviderAccount, ProviderKind
from projects.money import DEFAULT_QUOTA_PER_UNIT


class Command(BaseCommand):
    help = "Add a provider account; reads the credential from $QB_CREDENTIAL or, if unset, one line of stdin."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="Organization slug.")
        parser.add_argument("--kind", required=True, choices=ProviderKind.values)
        parser.add_argument("--name", required=True)
        parser.add_argument("--slug", help="Default: slugified name.")
        parser.add_argument("--base-url", required=True, help="e.g. https://api.openai.com")
        parser.add_argument("--newapi-user-id", type=int, help="New API: sent as New-Api-User.")
        parser.add_argument("--quota-per-unit", type=int, default=DEFAULT_QUOTA_PER_UNIT)
        parser.add_argument("--currency", default="USD")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = Organization.objects.filter(slug=options["org"]).first()
        if organization is None:
            raise CommandError(f"no organization {options['org']!r}")
        credential = os.environ.get("QB_CREDENTIAL", "")
        if not credential:
            if sys.stdin.isatty():
                self.stderr.write("Paste the credential and press Enter: ", ending="")
            credential = sys.stdin.readline().strip()
        if not credential:
            raise CommandError("no credential: set QB_CREDENTIAL or pipe it on stdin")
        account = ProviderAccount(
            organization=organization,
            kind=options["kind"],
            name=options["name"],
            slug=options["slug"] or slugify(options["name"])[:60],
            base_url=options["base_url"],
            newapi_user_id=options["newapi_user_id"],
            quota_per_unit=options["quota_per_unit"],
            currency=options["currency"].upper(),
        )
        account.set_credential(credential)
        try:
            account.full_clean()
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        account.save()
        self.stdout.write(
            f"added {account.slug} ({account.get_kind_display()}) to {organization.slug}, credential {account.credential_hint}"
        )
