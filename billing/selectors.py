"""Billing reads: balances, budgets against spend."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.db.models import OuterRef, Subquery, Sum

from projects.models import Organization, ProviderAccount
from usage.models import UsageDaily

from .models import BalanceSnapshot, Budget

ZERO = Decimal(0)


@dataclass(frozen=True)
class AccountBalance:
    account: ProviderAccount
    snapshot: BalanceSnapshot | None


def latest_balances(*, organization: Organization) -> list[AccountBalance]:
    """Return each provider account with its newest provider-reported snapshot (None if never polled).

    Two queries whatever the number of accounts: accounts, then the newest snapshot ids by subquery.
    """
    newest = (
        BalanceSnapshot.objects.filter(provider_account=OuterRef("pk")).order_by("-taken_at").values("pk")[:1]
    )
    accounts = list(
        ProviderAccount.objects.filter(organization=organization)
        .annotate(latest_snapshot_id=Subquery(newest))
        .order_by("name")
    )
    ids = [a.latest_snapshot_id for a in accounts if a.latest_snapshot_id]
    snapshots = BalanceSnapshot.objects.in_bulk(ids)
    return [AccountBalance(a, snapshots.get(a.latest_snapshot_id)) for a in accounts]


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    actual: Decimal
    percent: Decimal

    @property
    def state(self) -> str:
        if self.percent >= 100:
            return "over"
        if self.percent >= 80:
            return "at-risk"
        return "on-track"


def budget_month_status(*, organization: Organization, month_start: date, today: date) -> list[BudgetStatus]:
    """Return every budget with its month-to-date actual spend (budget currency only), one query for spend."""
    budgets = list(Budget.objects.filter(organization=organization).select_related("project"))
    if not budgets:
        return []
    spend_rows = (
        UsageDaily.objects.filter(organization=organization, day__gte=month_start, day__lte=today)
        .values("project_id", "model", "currency")
        .annotate(cost=Sum("cost"))
    )
    spend = list(spend_rows)
    statuses = []
    for budget in budgets:
        actual = sum(
            (
                row["cost"] or ZERO
                for row in spend
                if row["currency"] == budget.currency
                and (budget.project_id is None or row["project_id"] == budget.project_id)
                and (not budget.model or row["model"] == budget.model)
            ),
            ZERO,
        )
        percent = actual / budget.monthly_amount * 100 if budget.monthly_amount else ZERO
        statuses.append(BudgetStatus(budget=budget, actual=actual, percent=percent))
    statuses.sort(key=lambda s: s.percent, reverse=True)
    return statuses
