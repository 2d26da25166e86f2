"""Twin of the ``evaluate_alerts`` beat task: evaluate alert rules now and deliver inline (cron-only installs)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from billing.services.alerts import DeliveryError, alert_delivery_send, alerts_evaluate, pending_delivery_ids
from projects.models import Organization


class Command(BaseCommand):
    help = "Evaluate budget, balance, anomaly and staleness alerts; send new alerts once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", help="Organization slug (default: all).")
        parser.add_argument("--no-send", action="store_true", help="Record alerts without delivering them.")

    def handle(self, *args: Any, **options: Any) -> None:
        organizations = Organization.objects.all()
        if options["org"]:
            organizations = organizations.filter(slug=options["org"])
        for organization in organizations:
            events = alerts_evaluate(organization=organization)
            sent = failed = 0
            if not options["no_send"]:
                for delivery_id in pending_delivery_ids(events):
                    try:
                        alert_delivery_send(delivery_id=delivery_id)
                        sent += 1
                    except DeliveryError as exc:
                        failed += 1
                        self.stderr.write(f"delivery {delivery_id}: {exc}")
            self.stdout.write(
                f"{organization.slug}: {len(events)} new alert(s), {sent} sent, {failed} failed"
            )
