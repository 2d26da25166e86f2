"""Month review reads (issue 6): one organization month against the previous one, for finance.

Everything aggregates the daily rollup in SQL (``usage.models.UsageDaily``) and reuses the analytics
selectors (``usage.selectors``) and the budget variance/forecast rules (``billing.selectors``/``rules``).
Months are the organization's local months: ``UsageDaily.day`` is already a local date, and instants
(balance snapshots, top-ups) are compared with the local month's bounds converted to UTC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import DateField, OuterRef, Q, Subquery, Sum
from django.db.models.functions import TruncMonth

from projects.models import ApiKey, Organization, Project, ProviderAccount
from projects.money import format_money, safe_ratio
from usage.models import RecordStatus, StreamState, UsageDaily
from usage.selectors import (
    MILLION_TOKENS,
    CurrencyTotal,
    DailySpend,
    HeatCell,
    TokenSummary,
    UnitCostPoint,
    UsageFilter,
    daily_rollups,
    peak_hours,
    spend_by_day,
)
from usage.services import local_day_bounds

from . import rules
from .models import BalanceSnapshot, Budget, TopUp, TopUpStatus
from .selectors import BudgetVariance, SpendGrid, budget_variances, budgets_for_org, spend_grid

ZERO = Decimal(0)
HUNDRED = Decimal(100)
MONTH_PATTERN = re.compile(r"^(\d{4})-(\d{2})$")
# A cost driver's model "shifted the mix" when its share of requests rose by at least this many points.
MIX_SHIFT_POINTS = Decimal(10)
# A cache hit rate drop worth naming, in percentage points.
CACHE_DROP_POINTS = Decimal(10)
DRIVER_LIMIT = 5
PEAK_LIMIT = 3


# --- Months -----------------------------------------------------------------------------------------


def parse_month(text: str) -> date | None:
    """Return the first day of ``YYYY-MM`` (None when malformed or out of range)."""
    match = MONTH_PATTERN.match(text)
    if not match:
        return None
    year, month = int(match.group(1)), int(match.group(2))
    if not (1 <= month <= 12 and 2000 <= year <= 2999):
        return None
    return date(year, month, 1)


def month_label(month: date) -> str:
    return f"{month:%Y-%m}"


@dataclass(frozen=True)
class MonthWindow:
    """A local month: first/last local day, its UTC bounds [start, end), and where today is."""

    month: date
    first: date
    last: date
    start: datetime
    end: datetime
    today: date

    @property
    def is_open(self) -> bool:
        """The month has not ended yet in the organization's zone (it cannot be closed)."""
        return self.today <= self.last

    @property
    def is_current(self) -> bool:
        return self.first <= self.today <= self.last

    @property
    def previous(self) -> date:
        return rules.add_months(self.month, -1)

    @property
    def next(self) -> date:
        return rules.add_months(self.month, 1)

    @property
    def label(self) -> str:
        return month_label(self.month)

    @property
    def flt(self) -> UsageFilter:
        return UsageFilter(start=self.first, end=self.last)


def month_window(*, organization: Organization, month: date, today: date) -> MonthWindow:
    first, last = rules.month_bounds(month)
    start, end = local_day_bounds(first, last, organization.zoneinfo)
    return MonthWindow(month=first, first=first, last=last, start=start, end=end, today=today)


# --- Totals -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CurrencyChange:
    """Spend in one currency this month and last; ``change_percent`` None when last month had none."""

    currency: str
    cost: Decimal
    previous_cost: Decimal
    requests: int
    previous_requests: int
    unpriced_requests: int

    @property
    def change(self) -> Decimal:
        return self.cost - self.previous_cost

    @property
    def change_percent(self) -> Decimal | None:
        ratio = safe_ratio(self.change, self.previous_cost)
        return None if ratio is None else ratio * HUNDRED


def totals_with_change(
    current: Sequence[CurrencyTotal], previous: Sequence[CurrencyTotal]
) -> list[CurrencyChange]:
    """Pair each currency's totals with last month's; a currency present in either month appears."""
    before = {t.currency: t for t in previous}
    now = {t.currency: t for t in current}
    result = []
    for currency in [t.currency for t in current] + [c for c in before if c not in now]:
        cur, prev = now.get(currency), before.get(currency)
        result.append(
            CurrencyChange(
                currency=currency,
                cost=cur.cost if cur else ZERO,
                previous_cost=prev.cost if prev else ZERO,
                requests=cur.requests if cur else 0,
                previous_requests=prev.requests if prev else 0,
                unpriced_requests=cur.unpriced_requests if cur else 0,
            )
        )
    return result


# --- Breakdown by project and by model, with budgets ------------------------------------------------


@dataclass(frozen=True)
class BreakdownRow:
    """Spend of one project (or model) in one currency, with the matching budget's variance.

    ``forecast`` only for the open month: month-to-date + trailing 7-day average x days left.
    """

    label: str
    currency: str
    actual: Decimal
    previous: Decimal
    forecast: Decimal | None
    budget: BudgetVariance | None

    @property
    def change(self) -> Decimal:
        return self.actual - self.previous


def _sum_daily(series: Sequence[Mapping[date, Decimal]]) -> dict[date, Decimal]:
    total: dict[date, Decimal] = {}
    for days in series:
        for day, cost in days.items():
            total[day] = total.get(day, ZERO) + cost
    return total


def _breakdown(
    *,
    grid: SpendGrid,
    window: MonthWindow,
    dimension: str,
    labels: Mapping[object, str],
    budgets: Mapping[tuple[object, str], BudgetVariance],
) -> list[BreakdownRow]:
    """Group the grid by project id or model and currency; one row per group with spend or a budget."""
    groups: dict[tuple[object, str], list[dict[date, Decimal]]] = {}
    for (project_id, model, currency), days in grid.by_day.items():
        key: object = project_id if dimension == "project" else model
        groups.setdefault((key, currency), []).append(days)
    for budget_key in budgets:
        groups.setdefault(budget_key, [])
    prev_first, prev_last = rules.month_bounds(window.previous)
    end = min(window.today, window.last)
    rows = []
    for (key, currency), series in groups.items():
        daily = _sum_daily(series)
        actual = sum((c for d, c in daily.items() if window.first <= d <= end), ZERO)
        previous = sum((c for d, c in daily.items() if prev_first <= d <= prev_last), ZERO)
        forecast = None
        if window.is_current:
            average = rules.trailing_average(daily, today=window.today)
            forecast = rules.month_forecast(month_to_date=actual, average_daily=average, today=window.today)
        budget = budgets.get((key, currency))
        if not (actual or previous or budget):
            continue
        rows.append(
            BreakdownRow(
                label=labels.get(key, "Unassigned") if dimension == "project" else str(key),
                currency=currency,
                actual=actual,
                previous=previous,
                forecast=forecast,
                budget=budget,
            )
        )
    rows.sort(key=lambda r: (r.currency, -r.actual, r.label))
    return rows


@dataclass(frozen=True)
class Breakdown:
    projects: list[BreakdownRow]
    models: list[BreakdownRow]
    organization_budgets: list[BudgetVariance]


def spend_breakdown(
    *, organization: Organization, window: MonthWindow, grid: SpendGrid | None = None
) -> Breakdown:
    """Return spend by project and by model (per currency) with budget, variance and forecast.

    Budgets attach to rows they describe exactly: a project budget without a model scope to its
    project row, an organization budget limited to one model to that model's row; organization-wide
    budgets are returned separately. One grid query covers last month, this month and the trailing
    window, unless ``grid`` is given (for a past month, ``MonthDigest.month_grid`` serves: every sum
    here is over whole months).
    """
    today = window.today
    if grid is None:
        grid_start = window.previous
        grid_end = min(window.last, today) if window.is_current else window.last
        grid = spend_grid(organization=organization, start=grid_start, end=grid_end)
    budgets: list[Budget] = budgets_for_org(organization=organization)
    variances = budget_variances(budgets=budgets, grid=grid, month=window.month, today=today)
    by_project: dict[tuple[object, str], BudgetVariance] = {}
    by_model: dict[tuple[object, str], BudgetVariance] = {}
    org_wide = []
    for variance in variances:
        budget = variance.budget
        if budget.project_id is not None and not budget.model:
            by_project.setdefault((budget.project_id, budget.currency), variance)
        elif budget.project_id is None and budget.model:
            by_model.setdefault((budget.model, budget.currency), variance)
        elif budget.project_id is None:
            org_wide.append(variance)
    project_ids: set[int] = {pid for pid, _model, _cur in grid.by_day if pid is not None} | {
        pid for pid, _cur in by_project if isinstance(pid, int)
    }
    names: dict[object, str] = dict(
        Project.objects.filter(organization=organization, pk__in=project_ids).values_list("pk", "name")
    )
    return Breakdown(
        projects=_breakdown(grid=grid, window=window, dimension="project", labels=names, budgets=by_project),
        models=_breakdown(grid=grid, window=window, dimension="model", labels={}, budgets=by_model),
        organization_budgets=org_wide,
    )


# --- Unit cost, tokens, failures, peaks -------------------------------------------------------------


@dataclass(frozen=True)
class UnitCostChange:
    currency: str
    current: UnitCostPoint | None
    previous: UnitCostPoint | None

    @property
    def per_request(self) -> Decimal | None:
        return self.current.per_request if self.current else None

    @property
    def previous_per_request(self) -> Decimal | None:
        return self.previous.per_request if self.previous else None

    @property
    def per_1m(self) -> Decimal | None:
        return self.current.per_1m_tokens if self.current else None

    @property
    def previous_per_1m(self) -> Decimal | None:
        return self.previous.per_1m_tokens if self.previous else None

    @staticmethod
    def _change(new: Decimal | None, old: Decimal | None) -> Decimal | None:
        if new is None or old is None:
            return None
        ratio = safe_ratio(new - old, old)
        return None if ratio is None else ratio * HUNDRED

    @property
    def per_request_change(self) -> Decimal | None:
        return self._change(
            self.current.per_request if self.current else None,
            self.previous.per_request if self.previous else None,
        )

    @property
    def per_1m_change(self) -> Decimal | None:
        return self._change(
            self.current.per_1m_tokens if self.current else None,
            self.previous.per_1m_tokens if self.previous else None,
        )


@dataclass(frozen=True)
class TokenChange:
    current: TokenSummary | None
    previous: TokenSummary | None


@dataclass(frozen=True)
class FailedCost:
    currency: str
    cost: Decimal
    requests: int
    total_requests: int

    @property
    def share(self) -> Decimal | None:
        ratio = safe_ratio(Decimal(self.requests), Decimal(self.total_requests))
        return None if ratio is None else ratio * HUNDRED


@dataclass(frozen=True)
class Peaks:
    days: list[DailySpend]
    hours: list[HeatCell]

    @property
    def labelled_hours(self) -> list[tuple[str, HeatCell]]:
        """("Tue 14:00-15:00", cell) pairs; hours are local."""
        return [
            (f"{WEEKDAY_NAMES[h.weekday]} {h.hour:02d}:00-{(h.hour + 1) % 24:02d}:00", h) for h in self.hours
        ]


WEEKDAY_NAMES = {1: "Mon", 2: "Tue", 3: "Wed", 4: "Thu", 5: "Fri", 6: "Sat", 7: "Sun"}


def peak_periods(
    *, organization: Organization, window: MonthWindow, currency: str, daily: Sequence[DailySpend]
) -> Peaks:
    """The month's costliest local days (summed from ``daily``, the month's spend per day in
    ``currency``, grouped or not) and weekday x hour cells (from the hourly rollup)."""
    per_day: dict[date, list[Any]] = {}
    for d in daily:
        acc = per_day.setdefault(d.day, [ZERO, 0])
        acc[0] += d.cost
        acc[1] += d.requests
    days = [DailySpend(day, "Spend", cost, requests) for day, (cost, requests) in per_day.items()]
    hours = peak_hours(organization=organization, flt=window.flt, currency=currency)
    return Peaks(
        days=sorted(days, key=lambda d: (-d.cost, d.day))[:PEAK_LIMIT],
        hours=sorted((h for h in hours if h.cost or h.requests), key=lambda h: (-h.cost, -h.requests))[
            :PEAK_LIMIT
        ],
    )


# --- Cost drivers (pure) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DriverStats:
    """One (key, model) in one month and currency. ``key_id`` "" means requests without a key."""

    key_id: str
    key_name: str
    model: str
    cost: Decimal
    requests: int
    input_tokens: int
    cache_read_tokens: int

    @property
    def cache_hit_rate(self) -> Decimal | None:
        ratio = safe_ratio(Decimal(self.cache_read_tokens), Decimal(self.input_tokens))
        return None if ratio is None else ratio * HUNDRED


@dataclass(frozen=True)
class CostDriver:
    key_name: str
    model: str
    cost: Decimal
    previous_cost: Decimal
    reason: str  # new_key | model_mix | cache_drop | volume | unit_cost
    explanation: str

    @property
    def delta(self) -> Decimal:
        return self.cost - self.previous_cost


def _pct(value: Decimal | None) -> str:
    return "—" if value is None else f"{value.quantize(Decimal('0.1'))}%"


def cost_drivers(
    current: Sequence[DriverStats],
    previous: Sequence[DriverStats],
    *,
    currency: str,
    limit: int = DRIVER_LIMIT,
) -> list[CostDriver]:
    """Return the (key, model) pairs whose spend grew most month over month, each with one reason.

    Reasons are tried in this order and the first that holds is named:
    1. new key: the key made no request last month;
    2. model-mix shift: the model's share of all requests rose by >= 10 points;
    3. cache hit drop: the pair's cache-read share of input fell by >= 10 points;
    4. volume growth: the pair made more requests than last month;
    5. otherwise the cost per request rose.
    Only growth is listed (a pair that got cheaper is not a driver). Amounts are exact; the
    explanation rounds for display.
    """
    before = {(s.key_id, s.model): s for s in previous}
    keys_before = {s.key_id for s in previous if s.requests or s.cost}
    total_now = sum(s.requests for s in current)
    total_before = sum(s.requests for s in previous)

    def requests_by_model(stats: Sequence[DriverStats]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in stats:
            counts[s.model] = counts.get(s.model, 0) + s.requests
        return counts

    # Summed once per month: asking per driver would rescan every pair for each one (pairs squared).
    model_requests_now = requests_by_model(current)
    model_requests_before = requests_by_model(previous)

    def model_share(counts: Mapping[str, int], model: str, total: int) -> Decimal | None:
        ratio = safe_ratio(Decimal(counts.get(model, 0)), Decimal(total))
        return None if ratio is None else ratio * HUNDRED

    drivers = []
    for now in current:
        old = before.get((now.key_id, now.model))
        old_cost = old.cost if old else ZERO
        delta = now.cost - old_cost
        if delta <= 0:
            continue
        money = format_money(delta, currency)
        share_now = model_share(model_requests_now, now.model, total_now)
        share_before = model_share(model_requests_before, now.model, total_before) or ZERO
        if now.key_id and now.key_id not in keys_before:
            reason = "new_key"
            text = f"New key {now.key_name}: +{money}, no requests last month"
        elif share_now is not None and share_now - share_before >= MIX_SHIFT_POINTS:
            reason = "model_mix"
            text = f"Model-mix shift: {now.model} went from {_pct(share_before)} to {_pct(share_now)} of requests (+{money})"
        elif (
            old is not None
            and old.cache_hit_rate is not None
            and now.cache_hit_rate is not None
            and old.cache_hit_rate - now.cache_hit_rate >= CACHE_DROP_POINTS
        ):
            reason = "cache_drop"
            text = f"Cache hit drop: {_pct(old.cache_hit_rate)} → {_pct(now.cache_hit_rate)} of input read from cache (+{money})"
        elif now.requests > (old.requests if old else 0):
            reason = "volume"
            old_requests = old.requests if old else 0
            text = f"Volume growth: {old_requests:,} → {now.requests:,} requests (+{money})"
        elif not now.requests and now.input_tokens > (old.input_tokens if old else 0):
            # Bucketed reports (Anthropic's usage report) carry tokens but no request counts.
            reason = "volume"
            old_tokens = old.input_tokens if old else 0
            text = f"Volume growth: {old_tokens:,} → {now.input_tokens:,} input tokens (+{money})"
        else:
            reason = "unit_cost"
            if now.requests:
                old_unit = safe_ratio(old_cost, Decimal(old.requests)) if old else None
                new_unit = safe_ratio(now.cost, Decimal(now.requests))
                text = (
                    f"Dearer requests: {format_money(old_unit, currency, 4)} → "
                    f"{format_money(new_unit, currency, 4)} per request (+{money})"
                )
            else:
                million = Decimal(1_000_000)
                old_unit = safe_ratio(old_cost * million, Decimal(old.input_tokens)) if old else None
                new_unit = safe_ratio(now.cost * million, Decimal(now.input_tokens))
                text = (
                    f"Dearer tokens: {format_money(old_unit, currency)} → "
                    f"{format_money(new_unit, currency)} per 1M input tokens (+{money})"
                )
        drivers.append(CostDriver(now.key_name, now.model, now.cost, old_cost, reason, text))
    drivers.sort(key=lambda d: (-d.delta, d.key_name, d.model))
    return drivers[:limit]


# --- Balance reconciliation -------------------------------------------------------------------------


@dataclass(frozen=True)
class Reconciliation:
    """Opening + top-ups credited - spend = expected closing, against the provider's closing reading.

    ``difference`` = reported - expected (positive: the provider holds more than the ledger explains).
    """

    account: ProviderAccount
    currency: str
    opening: BalanceSnapshot | None
    topups: Decimal
    topup_count: int
    spend: Decimal
    closing: BalanceSnapshot | None
    tolerance: Decimal
    cause: str = ""

    @property
    def expected(self) -> Decimal | None:
        if self.opening is None:
            return None
        opening: Decimal = self.opening.remaining
        return opening + self.topups - self.spend

    @property
    def difference(self) -> Decimal | None:
        expected = self.expected
        if expected is None or self.closing is None:
            return None
        closing: Decimal = self.closing.remaining
        return closing - expected

    @property
    def flagged(self) -> bool:
        return self.difference is not None and abs(self.difference) > self.tolerance

    @property
    def reconciles(self) -> bool:
        return self.difference is not None and not self.flagged


def reconciliation_tolerance(spend: Decimal) -> Decimal:
    """Return the larger of QB_RECONCILE_TOLERANCE_AMOUNT and QB_RECONCILE_TOLERANCE_PERCENT % of spend."""
    amount = Decimal(settings.QB_RECONCILE_TOLERANCE_AMOUNT)
    percent = Decimal(settings.QB_RECONCILE_TOLERANCE_PERCENT)
    return max(amount, abs(spend) * percent / HUNDRED)


def _likely_cause(
    *,
    difference: Decimal | None,
    flagged: bool,
    opening: BalanceSnapshot | None,
    closing: BalanceSnapshot | None,
    window: MonthWindow,
    pending: Sequence[TopUp],
    usage_cursor: datetime | None,
    currency: str,
) -> str:
    if opening is None:
        return "No balance reading at or before the month start."
    if closing is None:
        return "No balance reading at or before the month end."
    if difference is None or not flagged:
        return ""
    causes = []
    if difference > 0:
        if pending:
            refs = ", ".join(
                f"{t.order_ref or 'no ref'} ({format_money(t.amount, currency)})" for t in pending[:3]
            )
            causes.append(f"Unsynced top-up: pending top-up(s) {refs} not marked credited.")
        else:
            causes.append(
                "Unsynced top-up: the provider credited more than the ledger records (top-up or refund)."
            )
    else:
        if usage_cursor is not None and usage_cursor < min(window.end, closing.taken_at):
            causes.append(
                f"In-flight rows: usage is ingested only through {usage_cursor:%Y-%m-%d %H:%M} UTC."
            )
        else:
            causes.append(
                "Spend the provider billed but Quotaboard has not stored, or a top-up it never credited."
            )
    gap_open = window.start - opening.taken_at
    gap_close = window.end - closing.taken_at
    if max(gap_open, gap_close).total_seconds() > 3600:
        causes.append(
            "Readings are not at the month boundaries; spend between them and the boundary counts in neither."
        )
    return " ".join(causes)


def balance_reconciliation(
    *,
    organization: Organization,
    window: MonthWindow,
    account_spend: Mapping[tuple[int, str], Decimal] | None = None,
) -> list[Reconciliation]:
    """Return one reconciliation per provider account (in the account's currency) for the month.

    Opening = the last reading at or before the month start; closing = the last at or before the
    month end (start of the next local month). Top-ups count when credited inside the month
    (amount + bonus); spend is the account's rollup spend over the month's local days
    (``account_spend`` per (account id, currency) when the caller has it, e.g. from the digest).
    Four queries whatever the number of accounts (three with ``account_spend``).
    """

    def reading(at: datetime) -> Subquery:
        return Subquery(
            BalanceSnapshot.objects.filter(
                provider_account=OuterRef("pk"), currency=OuterRef("currency"), taken_at__lte=at
            )
            .order_by("-taken_at", "-pk")
            .values("pk")[:1]
        )

    accounts = list(
        ProviderAccount.objects.filter(organization=organization)
        .annotate(opening_id=reading(window.start), closing_id=reading(window.end))
        .annotate(
            usage_cursor=Subquery(
                StreamState.objects.filter(provider_account=OuterRef("pk"), stream="usage").values(
                    "cursor_at"
                )[:1]
            )
        )
        .order_by("name")
    )
    if not accounts:
        return []
    snapshots = BalanceSnapshot.objects.in_bulk(
        [a.opening_id for a in accounts if a.opening_id] + [a.closing_id for a in accounts if a.closing_id]
    )
    ids = [a.pk for a in accounts]
    # Pending top-ups (any time before the month end) explain a positive difference; credited ones
    # inside the month are the movement. Few rows: read them, sum in Python (exact Decimals).
    credited: dict[tuple[int, str], Decimal] = {}
    counts: dict[tuple[int, str], int] = {}
    pending: dict[int, list[TopUp]] = {}
    in_month = Q(status=TopUpStatus.CREDITED, credited_at__gte=window.start, credited_at__lt=window.end)
    waiting = Q(status=TopUpStatus.PENDING, created_at__lt=window.end)
    for topup in TopUp.objects.filter(in_month | waiting, provider_account_id__in=ids).order_by("created_at"):
        if topup.status == TopUpStatus.PENDING:
            pending.setdefault(topup.provider_account_id, []).append(topup)
            continue
        key = (topup.provider_account_id, topup.currency)
        credited[key] = credited.get(key, ZERO) + topup.amount + topup.bonus
        counts[key] = counts.get(key, 0) + 1
    spend = (
        account_spend
        if account_spend is not None
        else {
            (r["provider_account_id"], r["currency"]): r["cost"] or ZERO
            for r in UsageDaily.objects.filter(
                organization=organization,
                provider_account_id__in=ids,
                day__gte=window.first,
                day__lte=window.last,
            )
            .values("provider_account_id", "currency")
            .annotate(cost=Sum("cost"))
            .order_by()
        }
    )
    result = []
    for account in accounts:
        key = (account.pk, account.currency)
        opening = snapshots.get(account.opening_id) if account.opening_id else None
        closing = snapshots.get(account.closing_id) if account.closing_id else None
        topups = credited.get(key, ZERO)
        month_spend = spend.get(key, ZERO)
        tolerance = reconciliation_tolerance(month_spend)
        draft = Reconciliation(
            account=account,
            currency=account.currency,
            opening=opening,
            topups=topups,
            topup_count=counts.get(key, 0),
            spend=month_spend,
            closing=closing,
            tolerance=tolerance,
        )
        cause = _likely_cause(
            difference=draft.difference,
            flagged=draft.flagged,
            opening=opening,
            closing=closing,
            window=window,
            pending=[t for t in pending.get(account.pk, []) if t.currency == account.currency],
            usage_cursor=account.usage_cursor,
            currency=account.currency,
        )
        result.append(
            Reconciliation(
                account=account,
                currency=account.currency,
                opening=opening,
                topups=topups,
                topup_count=counts.get(key, 0),
                spend=month_spend,
                closing=closing,
                tolerance=tolerance,
                cause=cause,
            )
        )
    return result


# --- One read for the month-over-month figures -------------------------------------------------------


@dataclass(frozen=True)
class _DigestRow:
    month: date
    currency: str
    failed: bool
    project_id: int | None
    account_id: int | None
    key_id: str
    key_name: str
    model: str
    cost: Decimal
    requests: int
    unpriced_requests: int
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int


@dataclass(frozen=True)
class MonthDigest:
    """The daily rollup of this month and last, summed per (month, currency, status, key, model,
    project, provider account).

    Two queries instead of ten (currencies, totals of both months, unit cost, tokens, failed
    requests, drivers of both months, a past month's project x model grid and the accounts' spend
    each scanned the same two months of rollup rows); the rows are few (a key belongs to one
    project and one account, so months x keys x models x statuses x currencies) and everything
    below sums them in Python, exactly (Decimals). The two months are whole local months, so the
    month bucket is exact.
    """

    window: MonthWindow
    rows: list[_DigestRow]

    def currencies(self, organization: Organization) -> list[str]:
        """As ``currencies_in_use`` over both months: the organization's currency first."""
        found = {r.currency for r in self.rows}
        return sorted(found, key=lambda c: (c != organization.currency, c)) or [organization.currency]

    def totals(self, month: date) -> list[CurrencyTotal]:
        """As ``spend_totals`` for one of the two months: per currency, largest first."""
        sums: dict[str, list[Any]] = {}
        for r in self.rows:
            if r.month == month:
                acc = sums.setdefault(r.currency, [ZERO, 0, 0])
                acc[0] += r.cost
                acc[1] += r.requests
                acc[2] += r.unpriced_requests
        totals = [CurrencyTotal(c, cost, req, unpriced) for c, (cost, req, unpriced) in sums.items()]
        totals.sort(key=lambda t: -t.cost)
        return totals

    def unit_cost(self, currency: str) -> UnitCostChange:
        """As ``unit_cost_change``: cost per request and per 1M tokens (input + output), both months."""
        points = {}
        for month in (self.window.month, self.window.previous):
            rows = [r for r in self.rows if r.month == month and r.currency == currency]
            if not rows:
                continue
            cost = sum((r.cost for r in rows), ZERO)
            requests = sum(r.requests for r in rows)
            tokens = sum(r.input_tokens + r.output_tokens for r in rows)
            per_1m = safe_ratio(cost, Decimal(tokens))
            points[month] = UnitCostPoint(
                month,
                "All",
                cost,
                requests,
                tokens,
                safe_ratio(cost, Decimal(requests)),
                None if per_1m is None else per_1m * MILLION_TOKENS,
            )
        return UnitCostChange(currency, points.get(self.window.month), points.get(self.window.previous))

    def tokens(self) -> TokenChange:
        """As ``token_change``: token structure of both months, all currencies."""

        def summary(month: date) -> TokenSummary | None:
            rows = [r for r in self.rows if r.month == month]
            if not rows:
                return None
            return TokenSummary(
                sum(r.input_tokens for r in rows),
                sum(r.cache_read_tokens for r in rows),
                sum(r.cache_write_tokens for r in rows),
                sum(r.output_tokens for r in rows),
                sum(r.reasoning_tokens for r in rows),
            )

        return TokenChange(summary(self.window.month), summary(self.window.previous))

    def failed(self) -> list[FailedCost]:
        """As ``failed_request_cost``: this month's failed-request cost per currency, where any failed."""
        sums: dict[str, list[Any]] = {}
        for r in self.rows:
            if r.month == self.window.month:
                acc = sums.setdefault(r.currency, [ZERO, 0, 0])
                if r.failed:
                    acc[0] += r.cost
                    acc[1] += r.requests
                acc[2] += r.requests
        return [
            FailedCost(currency, cost, failed, total)
            for currency, (cost, failed, total) in sorted(sums.items())
            if failed
        ]

    def month_grid(self) -> SpendGrid:
        """A SpendGrid with each month's spend on the month's first day.

        Exact for every sum over whole months (a past month's breakdown and budget variances), not
        for a day-by-day read such as the open month's trailing average.
        """
        by_day: dict[tuple[int | None, str, str], dict[date, Decimal]] = {}
        for r in self.rows:
            days = by_day.setdefault((r.project_id, r.model, r.currency), {})
            days[r.month] = days.get(r.month, ZERO) + r.cost
        return SpendGrid(by_day=by_day)

    def account_spend(self) -> dict[tuple[int, str], Decimal]:
        """This month's spend per (provider account id, currency), as ``balance_reconciliation`` sums it."""
        spend: dict[tuple[int, str], Decimal] = {}
        for r in self.rows:
            if r.month == self.window.month and r.account_id is not None:
                key = (r.account_id, r.currency)
                spend[key] = spend.get(key, ZERO) + r.cost
        return spend

    def driver_stats(self, month: date, currency: str) -> list[DriverStats]:
        """As ``driver_stats`` for one of the two months."""
        sums: dict[tuple[str, str, str], list[Any]] = {}
        for r in self.rows:
            if r.month == month and r.currency == currency:
                acc = sums.setdefault((r.key_id, r.key_name, r.model), [ZERO, 0, 0, 0])
                acc[0] += r.cost
                acc[1] += r.requests
                acc[2] += r.input_tokens
                acc[3] += r.cache_read_tokens
        return [
            DriverStats(key_id, key_name, model, cost, requests, inp, cache)
            for (key_id, key_name, model), (cost, requests, inp, cache) in sums.items()
        ]

    def drivers(self, currency: str) -> list[CostDriver]:
        """As ``month_cost_drivers``."""
        return cost_drivers(
            self.driver_stats(self.window.month, currency),
            self.driver_stats(self.window.previous, currency),
            currency=currency,
        )


def month_digest(*, organization: Organization, window: MonthWindow) -> MonthDigest:
    """Return the digest of ``window``'s month and the one before (one grouped query on the rollup, one for key names)."""
    # Grouped by the key's id (an integer) and named afterwards: grouping by the key's text columns
    # made PostgreSQL sort every rollup row with collation compares instead of hashing the groups.
    query = list(
        daily_rollups(organization=organization, flt=UsageFilter(start=window.previous, end=window.last))
        .annotate(month=TruncMonth("day", output_field=DateField()))
        .values("month", "currency", "status", "api_key_id", "model", "project_id", "provider_account_id")
        .annotate(
            cost=Sum("cost"),
            requests=Sum("requests"),
            unpriced=Sum("unpriced_requests"),
            inp=Sum("input_tokens"),
            cr=Sum("cache_read_tokens"),
            cw=Sum("cache_write_tokens"),
            out=Sum("output_tokens"),
            rsn=Sum("reasoning_tokens"),
        )
        .order_by()
    )
    key_ids = {r["api_key_id"] for r in query if r["api_key_id"] is not None}
    keys = {
        pk: (str(public_id), name or "No key")
        for pk, public_id, name in ApiKey.objects.filter(
            organization=organization, pk__in=key_ids
        ).values_list("pk", "public_id", "name")
    }
    rows = []
    for r in query:
        key_id, key_name = keys.get(r["api_key_id"], ("", "No key"))
        rows.append(
            _DigestRow(
                month=r["month"],
                currency=r["currency"],
                failed=r["status"] == RecordStatus.ERROR,
                project_id=r["project_id"],
                account_id=r["provider_account_id"],
                key_id=key_id,
                key_name=key_name,
                model=r["model"],
                cost=r["cost"] or ZERO,
                requests=r["requests"] or 0,
                unpriced_requests=r["unpriced"] or 0,
                input_tokens=r["inp"] or 0,
                cache_read_tokens=r["cr"] or 0,
                cache_write_tokens=r["cw"] or 0,
                output_tokens=r["out"] or 0,
                reasoning_tokens=r["rsn"] or 0,
            )
        )
    return MonthDigest(window=window, rows=rows)


# --- The whole review -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MonthReview:
    window: MonthWindow
    currency: str
    currencies: list[str]
    totals: list[CurrencyChange]
    breakdown: Breakdown
    unit_cost: UnitCostChange
    tokens: TokenChange
    failed: list[FailedCost]
    peaks: Peaks
    drivers: list[CostDriver]
    reconciliation: list[Reconciliation]
    daily_by_project: list[DailySpend] = field(default_factory=list)
    has_data: bool = field(default=False)


def month_review(
    *, organization: Organization, month: date, today: date, currency: str | None = None
) -> MonthReview:
    """Return every figure of the month review page. Money per currency; the unit cost, peaks and
    drivers panels are in ``currency`` (default: the month's main currency). A fixed number of queries:
    the month-over-month figures, a past month's breakdown and the accounts' spend come from one
    digest of the rollup (``month_digest``); the peak days from the daily spend by project the page
    charts (``daily_by_project``).
    """
    window = month_window(organization=organization, month=month, today=today)
    digest = month_digest(organization=organization, window=window)
    currencies = digest.currencies(organization)
    chosen = currency if currency in currencies else currencies[0]
    current_totals = digest.totals(window.month)
    daily = spend_by_day(organization=organization, flt=window.flt, currency=chosen, group_by="project")
    # The open month's forecast needs days (trailing average): only then is the day grid read.
    grid = None if window.is_current else digest.month_grid()
    return MonthReview(
        window=window,
        currency=chosen,
        currencies=currencies,
        totals=totals_with_change(current_totals, digest.totals(window.previous)),
        breakdown=spend_breakdown(organization=organization, window=window, grid=grid),
        unit_cost=digest.unit_cost(chosen),
        tokens=digest.tokens(),
        failed=digest.failed(),
        peaks=peak_periods(organization=organization, window=window, currency=chosen, daily=daily),
        drivers=digest.drivers(chosen),
        reconciliation=balance_reconciliation(
            organization=organization, window=window, account_spend=digest.account_spend()
        ),
        daily_by_project=daily,
        has_data=bool(current_totals),
    )
