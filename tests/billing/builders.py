"""Billing test builders: spend on given local days through the real ingest path."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from billing.models import Budget
from projects.models import Organization, Project, ProviderAccount
from tests import factories
from usage.services import usage_rows_upsert


def spend(
    org: Organization,
    day: date,
    amount: str,
    *,
    project: Project | None = None,
    account: ProviderAccount | None = None,
    model: str = "gpt-4o",
    currency: str = "USD",
    key: str = "",
) -> None:
    """Record one request costing ``amount`` at noon of the organization's local ``day``."""
    when = datetime.combine(day, time(12), tzinfo=org.zoneinfo).astimezone(UTC)
    row = factories.usage_row(
        when,
        model=model,
        cost=amount,
        currency=currency,
        project_slug=project.slug if project else "",
        key=key,
    )
    usage_rows_upsert(organization=org, rows=[row], account=account)


def budget(org: Organization, amount: str, *, project: Project | None = None, **kwargs: Any) -> Budget:
    return Budget.objects.create(organization=org, project=project, monthly_amount=Decimal(amount), **kwargs)
