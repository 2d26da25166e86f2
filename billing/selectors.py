"""Billing reads: balances, budgets against spend."""

from __future__ import annotations

import uuid
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.db.models import F, OuterRef, Subquery, Sum

from projects.models import Organization, ProviderAccount, ProviderKind
from projects.selectors import OrgAccess, get_org_for_user, refused
from usage.models import UsageDaily

from . import rules
from .models import AlertEvent, BalanceSnapshot, Budget, SnapshotSource, TopUp, TopUpSource, TopUpStatus

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


# --- Budgets: variance, forecast, allocation ----------------------------------------------------------


SpendKey = tuple[int | None, str, str]  # (project_id, model, currency)


@dataclass(frozen=True)
class SpendGrid:
    """Spend per (project, model, currency) per local day, read once and sliced per budget in Python.

    One grouped query over the rollup; the rows are few (projects x models x days), never raw records.
    """

    by_day: dict[SpendKey, dict[date, Decimal]]

    def daily_for(self, budget: Budget) -> dict[date, Decimal]:
        """Return the budget's spend per day: its currency, its project (or all), its model (or all)."""
        result: dict[date, Decimal] = {}
        for (project_id, model, currency), days in self.by_day.items():
            if currency != budget.currency:
                continue
            if budget.project_id is not None and project_id != budget.project_id:
                continue
            if budget.model and model != budget.model:
                continue
            for day, cost in days.items():
                result[day] = result.get(day, ZERO) + cost
        return result


def spend_grid(*, organization: Organization, start: date, end: date) -> SpendGrid:
    """Return spend per (project, model, currency, day) for local days [start, end]; one query."""
    rows = (
        UsageDaily.objects.filter(organization=organization, day__gte=start, day__lte=end)
        .values("project_id", "model", "currency", "day")
        .annotate(cost=Sum("cost"))
        .order_by()
    )
    by_day: dict[SpendKey, dict[date, Decimal]] = {}
    for row in rows:
        key = (row["project_id"], row["model"], row["currency"])
        by_day.setdefault(key, {})[row["day"]] = row["cost"] or ZERO
    return SpendGrid(by_day=by_day)


def budgets_for_org(*, organization: Organization) -> list[Budget]:
    """Return the organization's budgets, organization-wide first, then by project name; two queries."""
    return list(
        Budget.objects.filter(organization=organization)
        .select_related("project", "project__owner")
        .prefetch_related("notify_members")
        .order_by(F("project__name").asc(nulls_first=True), "model", "created_at")
    )


@dataclass(frozen=True)
class BudgetVariance:
    budget: Budget
    month: date
    variance: rules.Variance
    average_daily: Decimal
    daily_actual: Decimal | None  # today's spend against a daily amount (current month only)
    is_current: bool


def budget_variances(
    *, budgets: Sequence[Budget], grid: SpendGrid, month: date, today: date
) -> list[BudgetVariance]:
    """Return budget vs actual vs forecast for ``month`` (first day) from a grid covering it.

    For the current month: forecast = month-to-date + trailing 7-day average x days left, so the
    grid must also cover the 7 days before today. Past months have no forecast (forecast = actual).
    """
    first, last = rules.month_bounds(month)
    is_current = first <= today <= last
    end = today if is_current else last
    result = []
    for budget in budgets:
        daily = grid.daily_for(budget)
        actual = sum((cost for day, cost in daily.items() if first <= day <= end), ZERO)
        average = rules.trailing_average(daily, today=today) if is_current else ZERO
        forecast = (
            rules.month_forecast(month_to_date=actual, average_daily=average, today=today)
            if is_current
            else None
        )
        result.append(
            BudgetVariance(
                budget=budget,
                month=first,
                variance=rules.budget_variance(
                    budget=budget.monthly_amount, actual=actual, forecast=forecast
                ),
                average_daily=average,
                daily_actual=daily.get(today, ZERO) if is_current and budget.daily_amount else None,
                is_current=is_current,
            )
        )
    return result


def budget_grid_window(*, month: date, today: date) -> tuple[date, date]:
    """Return the day range a SpendGrid needs for budget_variances of ``month``."""
    first, last = rules.month_bounds(month)
    if first <= today <= last:
        return min(first, rules.trailing_days(today, rules.RUNWAY_WINDOW_DAYS)[0]), today
    return first, last


@dataclass(frozen=True)
class AllocationLine:
    label: str
    amount: Decimal
    share: Decimal  # percent of the organization budget


@dataclass(frozen=True)
class Allocation:
    """How an organization budget is split over project budgets; the rest is reserve."""

    org_budget: Budget
    lines: list[AllocationLine]
    allocated: Decimal
    reserve: Decimal
    reserve_share: Decimal

    @property
    def over_allocated(self) -> bool:
        return bool(self.allocated > self.org_budget.monthly_amount)


def budget_allocations(*, budgets: Sequence[Budget]) -> list[Allocation]:
    """Return, per organization-wide budget (no model scope), its project budgets' shares and the reserve.

    Only project budgets in the same currency and without a model scope count toward the split.
    """
    result = []
    for org_budget in budgets:
        if org_budget.project_id is not None or org_budget.model:
            continue
        total = org_budget.monthly_amount
        parts = [
            b
            for b in budgets
            if b.project_id is not None and not b.model and b.currency == org_budget.currency
        ]
        lines = [
            AllocationLine(
                label=str(b.project), amount=b.monthly_amount, share=b.monthly_amount / total * 100
            )
            for b in parts
        ]
        allocated = sum((b.monthly_amount for b in parts), ZERO)
        reserve = total - allocated
        result.append(
            Allocation(
                org_budget=org_budget,
                lines=lines,
                allocated=allocated,
                reserve=reserve,
                reserve_share=reserve / total * 100,
            )
        )
    return result


# --- Balances, runway, derived balances ---------------------------------------------------------------


DERIVED_KINDS = frozenset({ProviderKind.OPENAI, ProviderKind.ANTHROPIC})


def credit_lots_from_topups(
    topups: Iterable[TopUp], *, account: ProviderAccount, tz: zoneinfo.ZoneInfo
) -> list[rules.CreditLot]:
    """Turn credited top-ups into credit lots: the paid amount (or a grant) plus any bonus as a granted lot.

    Expiry: the top-up's own ``expires_at``; else, for OpenAI, one year after purchase (domain.md).
    """
    lots = []
    for topup in topups:
        if topup.status != TopUpStatus.CREDITED:
            continue
        purchased = topup.created_at.astimezone(tz).date()
        credited = (topup.credited_at or topup.created_at).astimezone(tz).date()
        if topup.expires_at is not None:
            expires: date | None = topup.expires_at.astimezone(tz).date()
        elif account.kind == ProviderKind.OPENAI:
            expires = rules.one_year_after(purchased)
        else:
            expires = None
        ref = topup.order_ref or f"topup-{topup.pk}"
        kind: rules.LotKind = "granted" if topup.source == TopUpSource.GRANT else "paid"
        if topup.amount > 0:
            lots.append(rules.CreditLot(ref, kind, topup.amount, credited, expires))
        if topup.bonus > 0:
            lots.append(rules.CreditLot(f"{ref} bonus", "granted", topup.bonus, credited, expires))
    return lots


@dataclass(frozen=True)
class DerivedBalance:
    """Balance of an account without a balance API: credits in lots minus billed cost, FIFO by kind."""

    ledger: rules.CreditLedger
    credited: Decimal
    billed: Decimal
    snapshot: BalanceSnapshot | None  # newest console balance a user entered
    derived_at_snapshot: Decimal | None
    drift: Decimal | None  # console - derived, at the snapshot's day

    @property
    def balance(self) -> Decimal:
        return self.ledger.balance


def derive_balance(
    *,
    lots: Sequence[rules.CreditLot],
    daily: Mapping[date, Decimal],
    today: date,
    snapshot: BalanceSnapshot | None,
    tz: zoneinfo.ZoneInfo,
) -> DerivedBalance | None:
    """Return the derived balance (None without any credited lot) and its drift from the console value.

    Drift compares at the snapshot's local day: lots and spend through that day. Spend on that day
    after the console was read makes a small positive drift; larger ones mean missing top-ups or usage.
    """
    if not lots:
        return None
    first_credit = min(lot.credited_on for lot in lots)
    billed = sum((cost for day, cost in daily.items() if first_credit <= day <= today), ZERO)
    ledger = rules.credit_lots_consume(lots, daily, today=today)
    derived_at = drift = None
    if snapshot is not None:
        snap_day = snapshot.taken_at.astimezone(tz).date()
        at_snapshot = rules.credit_lots_consume(
            [lot for lot in lots if lot.credited_on <= snap_day], daily, today=snap_day
        )
        derived_at = at_snapshot.balance
        drift = snapshot.remaining - derived_at
    return DerivedBalance(
        ledger=ledger,
        credited=sum((lot.amount for lot in lots), ZERO),
        billed=billed,
        snapshot=snapshot,
        derived_at_snapshot=derived_at,
        drift=drift,
    )


@dataclass(frozen=True)
class AccountRunway:
    account: ProviderAccount
    snapshot: BalanceSnapshot | None  # newest reading (provider or console)
    derived: DerivedBalance | None
    balance: Decimal | None
    currency: str
    burn_7: Decimal
    burn_30: Decimal
    runway: rules.Runway | None
    factor_name: str
    factor: Decimal
    suggested_topup: Decimal | None
    daily: dict[date, Decimal]
    plan: rules.TopUpPlan | None = None
    terms: rules.PurchaseTerms = rules.NO_TERMS

    @property
    def is_derived(self) -> bool:
        return self.account.kind in DERIVED_KINDS


def account_runways(
    *, organization: Organization, today: date, account: ProviderAccount | None = None
) -> list[AccountRunway]:
    """Return balance, burn (7/30 days), runway and suggested top-up per provider account.

    Spend is the account's rollup spend in the account's currency. OpenAI and Anthropic have no
    balance API: their balance is derived from credited top-ups minus billed cost (see
    DerivedBalance). A fixed number of queries whatever the number of accounts.
    """
    tz = organization.zoneinfo
    accounts_qs = ProviderAccount.objects.filter(organization=organization).order_by("name")
    if account is not None:
        accounts_qs = accounts_qs.filter(pk=account.pk)
    newest = (
        BalanceSnapshot.objects.filter(provider_account=OuterRef("pk")).order_by("-taken_at").values("pk")[:1]
    )
    newest_manual = (
        BalanceSnapshot.objects.filter(provider_account=OuterRef("pk"), source=SnapshotSource.MANUAL)
        .order_by("-taken_at")
        .values("pk")[:1]
    )
    accounts = list(accounts_qs.annotate(newest_id=Subquery(newest), manual_id=Subquery(newest_manual)))
    if not accounts:
        return []
    snapshot_ids = {a.newest_id for a in accounts if a.newest_id} | {
        a.manual_id for a in accounts if a.manual_id
    }
    snapshots = BalanceSnapshot.objects.in_bulk(snapshot_ids)
    ids = [a.pk for a in accounts]

    derived_ids = [a.pk for a in accounts if a.kind in DERIVED_KINDS]
    topups_by_account: dict[int, list[TopUp]] = {}
    if derived_ids:
        for topup in TopUp.objects.filter(provider_account_id__in=derived_ids, status=TopUpStatus.CREDITED):
            topups_by_account.setdefault(topup.provider_account_id, []).append(topup)
    earliest = min(
        [today - timedelta(days=30)]
        + [
            (t.credited_at or t.created_at).astimezone(tz).date()
            for ts in topups_by_account.values()
            for t in ts
        ]
    )
    daily_by_account: dict[tuple[int, str], dict[date, Decimal]] = {}
    for row in (
        UsageDaily.objects.filter(provider_account_id__in=ids, day__gte=earliest, day__lte=today)
        .values("provider_account_id", "currency", "day")
        .annotate(cost=Sum("cost"))
        .order_by()
    ):
        daily_by_account.setdefault((row["provider_account_id"], row["currency"]), {})[row["day"]] = (
            row["cost"] or ZERO
        )
    environments: dict[int, set[str]] = {}
    for account_id, environment in (
        UsageDaily.objects.filter(
            provider_account_id__in=ids, day__gte=today - timedelta(days=30), project__isnull=False
        )
        .values_list("provider_account_id", "project__environment")
        .distinct()
    ):
        environments.setdefault(account_id, set()).add(environment)

    result = []
    for acct in accounts:
        daily = daily_by_account.get((acct.pk, acct.currency), {})
        snapshot = snapshots.get(acct.newest_id)
        derived = None
        if acct.kind in DERIVED_KINDS:
            derived = derive_balance(
                lots=credit_lots_from_topups(topups_by_account.get(acct.pk, []), account=acct, tz=tz),
                daily=daily,
                today=today,
                snapshot=snapshots.get(acct.manual_id),
                tz=tz,
            )
            balance = derived.balance if derived else (snapshot.remaining if snapshot else None)
        else:
            balance = snapshot.remaining if snapshot and snapshot.currency == acct.currency else None
        burn_7 = rules.trailing_average(daily, today=today, days=7)
        burn_30 = rules.trailing_average(daily, today=today, days=30)
        factor_name, factor = rules.safety_factor_for(environments.get(acct.pk, set()))
        terms = rules.PURCHASE_TERMS.get(acct.kind, rules.NO_TERMS)
        plan = rules.plan_topup(
            average_daily=burn_7, safety_factor=factor, terms=terms, balance=balance or ZERO
        )
        result.append(
            AccountRunway(
                account=acct,
                snapshot=snapshot,
                derived=derived,
                balance=balance,
                currency=acct.currency,
                burn_7=burn_7,
                burn_30=burn_30,
                runway=rules.runway(balance=balance, daily=daily, today=today)
                if balance is not None
                else None,
                factor_name=factor_name,
                factor=factor,
                suggested_topup=plan.amount,
                daily=daily,
                plan=plan,
                terms=terms,
            )
        )
    return result


def balance_history(*, account: ProviderAccount, since: datetime) -> list[BalanceSnapshot]:
    """Return the account's readings (provider and console) since ``since``, oldest first."""
    return list(
        BalanceSnapshot.objects.filter(provider_account=account, taken_at__gte=since).order_by("taken_at")
    )


def auto_recharged_in_month(*, account: ProviderAccount, start: datetime, end: datetime) -> Decimal:
    """Return the credited auto-recharge amount in [start, end) — what counts toward the monthly limit."""
    total = TopUp.objects.filter(
        provider_account=account,
        is_auto_recharge=True,
        status=TopUpStatus.CREDITED,
        created_at__gte=start,
        created_at__lt=end,
    ).aggregate(total=Sum("amount"))["total"]
    return total or ZERO


# --- Scoping helpers (tenancy for billing objects; outsiders get 404) ---------------------------------


def get_budget_for_user(
    user: AbstractBaseUser | AnonymousUser, org_slug: str, budget_id: uuid.UUID | str
) -> tuple[OrgAccess, Budget]:
    """Return the organization access and the budget with that public id in it, or raise 404."""
    access = get_org_for_user(user, org_slug)
    try:
        budget = (
            Budget.objects.select_related("project")
            .filter(organization=access.organization, public_id=budget_id)
            .first()
        )
    except ValidationError:  # not a UUID
        budget = None
    if budget is None:
        raise refused(user, org_slug, "budget", budget_id, Budget.objects.filter(public_id=budget_id))
    return access, budget


def get_alert_for_user(
    user: AbstractBaseUser | AnonymousUser, org_slug: str, alert_id: uuid.UUID | str
) -> tuple[OrgAccess, AlertEvent]:
    access = get_org_for_user(user, org_slug)
    try:
        alert = AlertEvent.objects.filter(organization=access.organization, public_id=alert_id).first()
    except ValidationError:
        alert = None
    if alert is None:
        raise refused(user, org_slug, "alert", alert_id, AlertEvent.objects.filter(public_id=alert_id))
    return access, alert


def alerts_for_org(
    *, organization: Organization, open_only: bool = False, limit: int = 200
) -> list[AlertEvent]:
    """Return the newest alerts with their budget, account, acknowledger and deliveries (three queries)."""
    qs = AlertEvent.objects.filter(organization=organization)
    if open_only:
        qs = qs.filter(acknowledged_at__isnull=True)
    return list(
        qs.select_related("budget", "budget__project", "provider_account", "acknowledged_by")
        .prefetch_related("deliveries")
        .order_by("-created_at")[:limit]
    )
