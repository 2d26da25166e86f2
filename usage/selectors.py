"""Usage reads. Dashboards aggregate the daily/hourly rollups in SQL; raw records only for the request log."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Case, DateField, F, Max, QuerySet, Sum, Value, When
from django.db.models.functions import TruncMonth, TruncWeek
from django.utils import timezone

from projects.models import Organization, Project
from projects.money import MoneyField, safe_ratio

from .models import ModelPrice, RecordStatus, StreamState, UsageDaily, UsageHourly, UsageRecord
from .services import local_day_bounds

ZERO = Decimal(0)


@dataclass(frozen=True)
class UsageFilter:
    """A clean, typed dashboard filter: local days [start, end] inclusive plus optional dimensions."""

    start: date
    end: date
    project_ids: tuple[int, ...] = ()
    environments: tuple[str, ...] = ()
    account_ids: tuple[int, ...] = ()
    key_ids: tuple[int, ...] = ()
    models: tuple[str, ...] = ()

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def daily_rollups(*, organization: Organization, flt: UsageFilter) -> QuerySet[UsageDaily]:
    """Return the organization's daily rollup rows matching the filter (unaggregated)."""
    qs = UsageDaily.objects.filter(organization=organization, day__gte=flt.start, day__lte=flt.end)
    if flt.project_ids:
        qs = qs.filter(project_id__in=flt.project_ids)
    if flt.environments:
        qs = qs.filter(project__environment__in=flt.environments)
    if flt.account_ids:
        qs = qs.filter(provider_account_id__in=flt.account_ids)
    if flt.key_ids:
        qs = qs.filter(api_key_id__in=flt.key_ids)
    if flt.models:
        qs = qs.filter(model__in=flt.models)
    return qs


@dataclass(frozen=True)
class CurrencyTotal:
    currency: str
    cost: Decimal
    requests: int
    unpriced_requests: int


def spend_totals(*, organization: Organization, flt: UsageFilter) -> list[CurrencyTotal]:
    """Return cost and requests per currency, largest first. Empty list means no data (not zero)."""
    rows = (
        daily_rollups(organization=organization, flt=flt)
        .values("currency")
        .annotate(cost=Sum("cost"), requests=Sum("requests"), unpriced=Sum("unpriced_requests"))
        .order_by("-cost")
    )
    return [
        CurrencyTotal(r["currency"], r["cost"] or ZERO, r["requests"] or 0, r["unpriced"] or 0) for r in rows
    ]


@dataclass(frozen=True)
class DailySpend:
    day: date
    label: str
    cost: Decimal
    requests: int


def spend_by_day(
    *, organization: Organization, flt: UsageFilter, currency: str, group_by: str | None = None
) -> list[DailySpend]:
    """Return cost per local day (and per model or project when grouped), in one currency.

    Days without data are absent; the chart fills the axis. Project labels are project names,
    "Unassigned" for spend on keys that belong to no project.
    """
    dims: list[str] = ["day"]
    if group_by == "model":
        dims.append("model")
    elif group_by == "project":
        dims.append("project__name")
    rows = (
        daily_rollups(organization=organization, flt=flt)
        .filter(currency=currency)
        .values(*dims)
        .annotate(cost=Sum("cost"), requests=Sum("requests"))
        .order_by("day")
    )
    label_field = {"model": "model", "project": "project__name"}.get(group_by or "", "")
    return [
        DailySpend(row["day"], _series_label(row, label_field), row["cost"] or ZERO, row["requests"] or 0)
        for row in rows
    ]


def _series_label(row: Mapping[str, Any], label_field: str | None) -> str:
    """Return a chart series name: the model as named, a missing project as "Unassigned", no grouping "Spend"."""
    if label_field == "model":
        return str(row["model"])
    if label_field:
        return str(row[label_field] or "Unassigned")
    return "Spend"


@dataclass(frozen=True)
class RankedSpend:
    key: str
    label: str
    cost: Decimal
    requests: int
    tokens: int
    share: Decimal | None = None


def _ranked(
    rows: Sequence[Mapping[str, Any]], key_field: str, label_field: str, unassigned: str
) -> list[RankedSpend]:
    total: Decimal = sum((row["cost"] or ZERO for row in rows), ZERO)
    ranked = []
    for row in rows:
        cost: Decimal = row["cost"] or ZERO
        ranked.append(
            RankedSpend(
                key=str(row[key_field] or ""),
                label=str(row[label_field] or unassigned),
                cost=cost,
                requests=int(row["requests"] or 0),
                tokens=int(row["tokens"] or 0),
                share=(cost / total * 100) if total else None,
            )
        )
    return ranked


def top_projects(
    *, organization: Organization, flt: UsageFilter, currency: str, limit: int = 5
) -> list[RankedSpend]:
    """Return the projects with the most spend in one currency; unassigned keys appear as one row."""
    rows = list(
        daily_rollups(organization=organization, flt=flt)
        .filter(currency=currency)
        .values("project__slug", "project__name")
        .annotate(
            cost=Sum("cost"), requests=Sum("requests"), tokens=Sum("input_tokens") + Sum("output_tokens")
        )
        .order_by("-cost")
    )
    return _ranked(rows, "project__slug", "project__name", "Unassigned")[:limit]


def top_models(
    *, organization: Organization, flt: UsageFilter, currency: str, limit: int = 5
) -> list[RankedSpend]:
    """Return the models with the most spend in one currency."""
    rows = list(
        daily_rollups(organization=organization, flt=flt)
        .filter(currency=currency)
        .values("model")
        .annotate(
            cost=Sum("cost"), requests=Sum("requests"), tokens=Sum("input_tokens") + Sum("output_tokens")
        )
        .order_by("-cost")
    )
    return _ranked(rows, "model", "model", "?")[:limit]


@dataclass(frozen=True)
class Freshness:
    """How current the data is: the oldest 'complete through' over active usage streams."""

    data_through: datetime | None
    last_success: datetime | None
    stale_accounts: list[str] = field(default_factory=list)


def freshness(*, organization: Organization) -> Freshness:
    """Return the data-through instant for the freshness badge (None when nothing was ingested yet)."""
    states = list(
        StreamState.objects.filter(provider_account__organization=organization, stream="usage").values(
            "provider_account__name", "cursor_at", "last_success_at"
        )
    )
    if not states:
        return Freshness(data_through=None, last_success=None)
    cursors = [s["cursor_at"] for s in states if s["cursor_at"]]
    successes = [s["last_success_at"] for s in states if s["last_success_at"]]
    now = timezone.now()
    stale = [
        s["provider_account__name"]
        for s in states
        if s["cursor_at"] is None or (now - s["cursor_at"]).total_seconds() > 6 * 3600
    ]
    return Freshness(
        data_through=min(cursors) if cursors else None,
        last_success=max(successes) if successes else None,
        stale_accounts=stale,
    )


def currencies_in_use(*, organization: Organization, flt: UsageFilter) -> list[str]:
    """Return the currencies with spend in the filter, the organization's own currency first."""
    found = set(
        daily_rollups(organization=organization, flt=flt).values_list("currency", flat=True).distinct()
    )
    ordered = sorted(found, key=lambda c: (c != organization.currency, c))
    return ordered or [organization.currency]


def group_series(rows: list[DailySpend]) -> dict[str, list[DailySpend]]:
    series: dict[str, list[DailySpend]] = defaultdict(list)
    for row in rows:
        series[row.label].append(row)
    return dict(series)


# --- Analytics explorer (issue 4): every selector below aggregates UsageDaily/UsageHourly in SQL. ---

GRANULARITIES = ("day", "week", "month")
JUMP_RATIO = Decimal("1.2")  # unit cost "rose" when it exceeds the previous period by more than 20 %
MILLION_TOKENS = Decimal(1_000_000)


def _period_expr(granularity: str) -> Any:
    """Bucket the rollup's local ``day``: weeks start on Monday (ISO), months on the 1st."""
    if granularity == "week":
        return TruncWeek("day", output_field=DateField())
    if granularity == "month":
        return TruncMonth("day", output_field=DateField())
    return F("day")


def period_start(day: date, granularity: str) -> date:
    """Return the start of the week (Monday) or month containing ``day``; the day itself for "day"."""
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    if granularity == "month":
        return day.replace(day=1)
    return day


def period_axis(start: date, end: date, granularity: str) -> list[date]:
    """Every period start from the one containing ``start`` through the one containing ``end``."""
    axis: list[date] = []
    current = period_start(start, granularity)
    while current <= end:
        axis.append(current)
        current = _next_period(current, granularity)
    return axis


def _next_period(current: date, granularity: str) -> date:
    if granularity == "week":
        return current + timedelta(days=7)
    if granularity == "month":
        return (current.replace(day=28) + timedelta(days=4)).replace(day=1)
    return current + timedelta(days=1)


def _previous_period(current: date, granularity: str) -> date:
    if granularity == "week":
        return current - timedelta(days=7)
    if granularity == "month":
        return (current - timedelta(days=1)).replace(day=1)
    return current - timedelta(days=1)


def _cost_in(currency: str) -> Sum:
    """Sum of cost in one currency only, so a row set with several currencies never mixes them."""
    return Sum(
        Case(When(currency=currency, then="cost"), default=Value(0), output_field=MoneyField()),
        output_field=MoneyField(),
    )


def spend_by_period(
    *, organization: Organization, flt: UsageFilter, currency: str, granularity: str, group_by: str | None
) -> list[DailySpend]:
    """Return cost per period (local day, ISO week or month) and per model or project, in one currency.

    ``DailySpend.day`` holds the period start; a period at the edge of the range may be partial.
    """
    label_field = {"model": "model", "project": "project__name"}.get(group_by or "")
    dims = ["period", label_field] if label_field else ["period"]
    rows = (
        daily_rollups(organization=organization, flt=flt)
        .filter(currency=currency)
        .annotate(period=_period_expr(granularity))
        .values(*dims)
        .annotate(cost=Sum("cost"), requests=Sum("requests"))
        .order_by("period")
    )
    return [
        DailySpend(row["period"], _series_label(row, label_field), row["cost"] or ZERO, row["requests"] or 0)
        for row in rows
    ]


@dataclass(frozen=True)
class TokenPeriod:
    """Token classes of one period (all currencies: tokens are not money)."""

    period: date
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    requests: int

    @property
    def uncached_input_tokens(self) -> int:
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens

    @property
    def visible_output_tokens(self) -> int:
        """Output tokens that are not reasoning."""
        return self.output_tokens - self.reasoning_tokens


def tokens_by_period(*, organization: Organization, flt: UsageFilter, granularity: str) -> list[TokenPeriod]:
    """Return input (uncached + cache read + cache write) and output (incl. reasoning) tokens per period."""
    rows = (
        daily_rollups(organization=organization, flt=flt)
        .annotate(period=_period_expr(granularity))
        .values("period")
        .annotate(
            inp=Sum("input_tokens"),
            cr=Sum("cache_read_tokens"),
            cw=Sum("cache_write_tokens"),
            out=Sum("output_tokens"),
            rsn=Sum("reasoning_tokens"),
            req=Sum("requests"),
        )
        .order_by("period")
    )
    return [
        TokenPeriod(
            r["period"],
            r["inp"] or 0,
            r["cr"] or 0,
            r["cw"] or 0,
            r["out"] or 0,
            r["rsn"] or 0,
            r["req"] or 0,
        )
        for r in rows
    ]


@dataclass(frozen=True)
class TokenSummary:
    """Totals over the range. Ratios are None when their denominator is zero (no data, not zero)."""

    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int

    @property
    def uncached_input_tokens(self) -> int:
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens

    @property
    def input_output_ratio(self) -> Decimal | None:
        """Input tokens per output token."""
        return safe_ratio(Decimal(self.input_tokens), Decimal(self.output_tokens))

    @property
    def cache_hit_rate(self) -> Decimal | None:
        """Cache-read share of all input tokens, in percent."""
        ratio = safe_ratio(Decimal(self.cache_read_tokens), Decimal(self.input_tokens))
        return None if ratio is None else ratio * 100


def token_summary(periods: list[TokenPeriod]) -> TokenSummary | None:
    """Sum already-aggregated periods; None when there are none."""
    if not periods:
        return None
    return TokenSummary(
        sum(p.input_tokens for p in periods),
        sum(p.cache_read_tokens for p in periods),
        sum(p.cache_write_tokens for p in periods),
        sum(p.output_tokens for p in periods),
        sum(p.reasoning_tokens for p in periods),
    )


@dataclass(frozen=True)
class CacheSavings:
    """Estimated money that cache reads saved, in the price list's currency.

    Estimate: cache-read tokens x (input price - cache-read price) per 1M, with the price effective on
    each day. Tokens of models without a price row are counted in ``unpriced_tokens``, not guessed.
    """

    currency: str
    saved: Decimal
    priced_tokens: int
    unpriced_tokens: int


def cache_savings(*, organization: Organization, flt: UsageFilter) -> list[CacheSavings]:
    """Return the estimated cache savings per price currency (empty list: no cache reads at all)."""
    rows = list(
        daily_rollups(organization=organization, flt=flt)
        .filter(cache_read_tokens__gt=0)
        .values("provider_account__kind", "model", "day")
        .annotate(tokens=Sum("cache_read_tokens"))
        .order_by()
    )
    if not rows:
        return []
    prices: dict[str, list[ModelPrice]] = defaultdict(list)
    for row_price in ModelPrice.objects.filter(model__in={r["model"] for r in rows}).order_by(
        "-effective_from"
    ):
        prices[row_price.model].append(row_price)
    saved: dict[str, Decimal] = defaultdict(Decimal)
    priced: dict[str, int] = defaultdict(int)
    unpriced = 0
    for row in rows:
        kind = row["provider_account__kind"]
        candidates = [p for p in prices[row["model"]] if kind is None or p.provider_kind == kind]
        price = next((p for p in candidates if p.applies_on(row["day"])), None)
        if price is None:
            unpriced += row["tokens"]
            continue
        # No cache-read price means cache reads bill as plain input (usage.services.cost_from_price): no saving.
        per_1m = price.input_per_1m - price.cache_read_per_1m if price.cache_read_per_1m is not None else ZERO
        saved[price.currency] += row["tokens"] * per_1m / MILLION_TOKENS
        priced[price.currency] += row["tokens"]
    if not saved:
        return [CacheSavings(organization.currency, ZERO, 0, unpriced)] if unpriced else []
    return [
        CacheSavings(cur, amount, priced[cur], unpriced if index == 0 else 0)
        for index, (cur, amount) in enumerate(sorted(saved.items(), key=lambda item: item[1], reverse=True))
    ]


@dataclass(frozen=True)
class ModelShare:
    """One model's spend, requests and tokens, and its share of each (percent; None when the total is 0)."""

    model: str
    cost: Decimal
    requests: int
    tokens: int
    spend_share: Decimal | None
    request_share: Decimal | None
    token_share: Decimal | None

    @property
    def cost_per_1m_tokens(self) -> Decimal | None:
        """Effective cost per 1M tokens (input incl. cache + output); None without tokens."""
        ratio = safe_ratio(self.cost, Decimal(self.tokens))
        return None if ratio is None else ratio * MILLION_TOKENS


def model_distribution(*, organization: Organization, flt: UsageFilter, currency: str) -> list[ModelShare]:
    """Return every model with spend in ``currency`` or requests, largest spend first.

    Requests and tokens count only rows in ``currency`` too, so the three shares describe the same rows.
    """
    rows = list(
        daily_rollups(organization=organization, flt=flt)
        .filter(currency=currency)
        .values("model")
        .annotate(
            cost=Sum("cost"), requests=Sum("requests"), tokens=Sum("input_tokens") + Sum("output_tokens")
        )
        .order_by("-cost", "model")
    )
    total_cost = sum((r["cost"] or ZERO for r in rows), ZERO)
    total_requests = sum(r["requests"] or 0 for r in rows)
    total_tokens = sum(r["tokens"] or 0 for r in rows)

    def share(part: Decimal | int, whole: Decimal | int) -> Decimal | None:
        ratio = safe_ratio(Decimal(part), Decimal(whole))
        return None if ratio is None else ratio * 100

    return [
        ModelShare(
            r["model"],
            r["cost"] or ZERO,
            r["requests"] or 0,
            r["tokens"] or 0,
            share(r["cost"] or ZERO, total_cost),
            share(r["requests"] or 0, total_requests),
            share(r["tokens"] or 0, total_tokens),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class UnitCostPoint:
    """Cost per request and per 1M tokens for one period and label ("All", a model or a project).

    ``*_jump`` is True when the unit cost rose by more than 20 % over the immediately preceding period
    of the same label; a period after a gap has nothing to compare with.
    """

    period: date
    label: str
    cost: Decimal
    requests: int
    tokens: int
    per_request: Decimal | None
    per_1m_tokens: Decimal | None
    per_request_jump: bool = False
    per_1m_jump: bool = False


def unit_cost_by_period(
    *,
    organization: Organization,
    flt: UsageFilter,
    currency: str,
    granularity: str = "week",
    group_by: str | None = None,
) -> list[UnitCostPoint]:
    """Return unit costs per period: the overall line ("All") first, then one line per model or project.

    Requests include failed ones (a retry storm makes each useful call dearer, which is the point).
    """
    label_field = {"model": "model", "project": "project__name"}.get(group_by or "")
    dims = ["period", label_field] if label_field else ["period"]
    rows = list(
        daily_rollups(organization=organization, flt=flt)
        .filter(currency=currency)
        .annotate(period=_period_expr(granularity))
        .values(*dims)
        .annotate(
            cost=Sum("cost"), requests=Sum("requests"), tokens=Sum("input_tokens") + Sum("output_tokens")
        )
        .order_by("period")
    )
    sums: dict[tuple[str, date], list[Any]] = {}
    for row in rows:
        keys = [("All", row["period"])]
        if label_field:
            keys.append((row[label_field] or "Unassigned", row["period"]))
        for key in keys:
            acc = sums.setdefault(key, [ZERO, 0, 0])
            acc[0] += row["cost"] or ZERO
            acc[1] += row["requests"] or 0
            acc[2] += row["tokens"] or 0
    unit: dict[tuple[str, date], tuple[Decimal | None, Decimal | None]] = {}
    for key, (cost, requests, tokens) in sums.items():
        per_1m = safe_ratio(cost, Decimal(tokens))
        unit[key] = (safe_ratio(cost, Decimal(requests)), None if per_1m is None else per_1m * MILLION_TOKENS)

    def jumped(new: Decimal | None, old: Decimal | None) -> bool:
        return new is not None and old is not None and old > 0 and new > old * JUMP_RATIO

    points = []
    for (label, period), (cost, requests, tokens) in sums.items():
        per_request, per_1m = unit[(label, period)]
        prev = unit.get((label, _previous_period(period, granularity)), (None, None))
        points.append(
            UnitCostPoint(
                period,
                label,
                cost,
                requests,
                tokens,
                per_request,
                per_1m,
                per_request_jump=jumped(per_request, prev[0]),
                per_1m_jump=jumped(per_1m, prev[1]),
            )
        )
    points.sort(key=lambda p: (p.label != "All", p.label, p.period))
    return points


@dataclass(frozen=True)
class HeatCell:
    """Requests and cost in one (local ISO weekday 1=Monday..7, local hour 0..23) cell."""

    weekday: int
    hour: int
    requests: int
    cost: Decimal


def peak_hours(*, organization: Organization, flt: UsageFilter, currency: str) -> list[HeatCell]:
    """Return hour x weekday cells in the organization's zone, from the hourly rollup.

    Caveat: the hourly rollup has model but no project/key/account dimension, so only the date range
    and model filters apply; in zones with a :30 offset a UTC hour is credited to the local hour it
    starts in.
    """
    tz = organization.zoneinfo
    start, end = local_day_bounds(flt.start, flt.end, tz)
    qs = UsageHourly.objects.filter(organization=organization, hour__gte=start, hour__lt=end)
    if flt.models:
        qs = qs.filter(model__in=flt.models)
    # Sum per UTC hour in SQL (at most 24 rows a day), then bucket in Python: SQLite evaluates a
    # time-zone-aware weekday/hour extraction in Python once per rollup row, which is far slower.
    per_hour = qs.values("hour").annotate(requests=Sum("requests"), cost=_cost_in(currency)).order_by()
    cells: dict[tuple[int, int], list[Any]] = {}
    for r in per_hour:
        local = r["hour"].astimezone(tz)
        cell = cells.setdefault((local.isoweekday(), local.hour), [0, ZERO])
        cell[0] += r["requests"] or 0
        cell[1] += r["cost"] or ZERO
    return [HeatCell(wd, hr, requests, cost) for (wd, hr), (requests, cost) in sorted(cells.items())]


@dataclass(frozen=True)
class ErrorCount:
    period: date
    error_code: str
    requests: int


def _error_label(code: str) -> str:
    return code or "unknown"


def errors_by_period(*, organization: Organization, flt: UsageFilter, granularity: str) -> list[ErrorCount]:
    """Return failed requests per period and error code ("unknown" when the provider gave none)."""
    rows = (
        daily_rollups(organization=organization, flt=flt)
        .filter(status=RecordStatus.ERROR)
        .annotate(period=_period_expr(granularity))
        .values("period", "error_code")
        .annotate(requests=Sum("requests"))
        .order_by("period", "error_code")
    )
    return [ErrorCount(r["period"], _error_label(r["error_code"]), r["requests"] or 0) for r in rows]


@dataclass(frozen=True)
class ErrorBreakdown:
    key_public_id: str
    key_name: str
    model: str
    error_code: str
    errors: int


def errors_by_key_and_model(
    *, organization: Organization, flt: UsageFilter, limit: int = 100
) -> list[ErrorBreakdown]:
    """Return failed requests per (key, model, error code), most first; requests without a key as "No key"."""
    rows = (
        daily_rollups(organization=organization, flt=flt)
        .filter(status=RecordStatus.ERROR)
        .values("api_key__public_id", "api_key__name", "model", "error_code")
        .annotate(errors=Sum("requests"))
        .order_by("-errors", "api_key__name", "model", "error_code")[:limit]
    )
    return [
        ErrorBreakdown(
            str(r["api_key__public_id"] or ""),
            r["api_key__name"] or "No key",
            r["model"],
            _error_label(r["error_code"]),
            r["errors"] or 0,
        )
        for r in rows
    ]


@dataclass(frozen=True)
class RetryStorm:
    """A key-day with many failures: likely a client retrying in a loop."""

    day: date
    key_public_id: str
    key_name: str
    errors: int
    requests: int

    @property
    def error_share(self) -> Decimal:
        return Decimal(self.errors) / Decimal(self.requests) * 100


def retry_storms(
    *,
    organization: Organization,
    flt: UsageFilter,
    min_errors: int = 50,
    min_share: Decimal = Decimal("0.3"),
) -> list[RetryStorm]:
    """Return key-days with at least ``min_errors`` failed requests making up ``min_share`` of the key's calls."""
    rows = (
        daily_rollups(organization=organization, flt=flt)
        .values("day", "api_key__public_id", "api_key__name")
        .annotate(
            errors=Sum(Case(When(status=RecordStatus.ERROR, then="requests"), default=Value(0))),
            requests=Sum("requests"),
        )
        .filter(errors__gte=min_errors)
        .order_by("-day", "-errors")
    )
    return [
        RetryStorm(
            r["day"],
            str(r["api_key__public_id"] or ""),
            r["api_key__name"] or "No key",
            r["errors"],
            r["requests"],
        )
        for r in rows
        if Decimal(r["errors"]) >= min_share * r["requests"]
    ]


@dataclass(frozen=True)
class KeySpend:
    """Spend of one key in the range. ``public_id`` empty means requests that carried no key."""

    public_id: str
    name: str
    project_name: str | None
    project_slug: str | None
    cost: Decimal
    requests: int
    errors: int
    last_used_at: datetime | None

    @property
    def unassigned(self) -> bool:
        return bool(self.public_id) and self.project_slug is None


def spend_by_key(*, organization: Organization, flt: UsageFilter, currency: str) -> list[KeySpend]:
    """Return every key with requests in the range, most spend (in ``currency``) first.

    ``last_used_at`` is the key's latest request ever (not just within the range).
    """
    rows = (
        daily_rollups(organization=organization, flt=flt)
        .values(
            "api_key__public_id",
            "api_key__name",
            "api_key__project__name",
            "api_key__project__slug",
            "api_key__last_used_at",
        )
        .annotate(
            # errors first: once "requests" names an annotation, F("requests") would point at it.
            errors=Sum(Case(When(status=RecordStatus.ERROR, then="requests"), default=Value(0))),
            cost=_cost_in(currency),
            requests=Sum("requests"),
        )
        .order_by("-cost", "-requests", "api_key__name")
    )
    return [
        KeySpend(
            str(r["api_key__public_id"] or ""),
            r["api_key__name"] or "No key",
            r["api_key__project__name"],
            r["api_key__project__slug"],
            r["cost"] or ZERO,
            r["requests"] or 0,
            r["errors"] or 0,
            r["api_key__last_used_at"],
        )
        for r in rows
    ]


@dataclass(frozen=True)
class KeyWake:
    """A key that had no requests for ``idle_days`` days and then spent again on ``woke_on``."""

    public_id: str
    name: str
    idle_days: int
    woke_on: date
    cost_since: Decimal
    requests_since: int


def keys_woken_after_idle(
    *, organization: Organization, flt: UsageFilter, currency: str, idle_days: int = 14
) -> list[KeyWake]:
    """Return keys idle for at least ``idle_days`` that made requests in the range (latest wake first).

    Idle is measured from the key's previous active day, or from its creation when it never ran before.
    Two queries over the rollup: key-days in the range, and each key's last active day before it.
    """
    active: list[Mapping[str, Any]] = list(
        daily_rollups(organization=organization, flt=flt)
        .filter(api_key__isnull=False)
        .values("api_key_id", "api_key__public_id", "api_key__name", "api_key__created_at", "day")
        .annotate(cost=_cost_in(currency), requests=Sum("requests"))
        .filter(requests__gt=0)
        .order_by("api_key_id", "day")
    )
    if not active:
        return []
    before = UsageFilter(
        start=date(1970, 1, 1),
        end=flt.start - timedelta(days=1),
        project_ids=flt.project_ids,
        environments=flt.environments,
        account_ids=flt.account_ids,
        key_ids=flt.key_ids,
        models=flt.models,
    )
    last_before = dict(
        daily_rollups(organization=organization, flt=before)
        .filter(api_key_id__in={r["api_key_id"] for r in active}, requests__gt=0)
        .values("api_key_id")
        .annotate(last=Max("day"))
        .values_list("api_key_id", "last")
    )
    tz = organization.zoneinfo
    wakes: list[KeyWake] = []
    by_key: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for row in active:
        by_key[row["api_key_id"]].append(row)
    for key_id, days in by_key.items():
        created = days[0]["api_key__created_at"].astimezone(tz).date()
        previous: date = last_before.get(key_id) or created
        wake: KeyWake | None = None
        for row in days:
            gap = (row["day"] - previous).days - 1
            if gap >= idle_days:
                wake = KeyWake(str(row["api_key__public_id"]), row["api_key__name"], gap, row["day"], ZERO, 0)
            if wake is not None:
                wake = KeyWake(
                    wake.public_id,
                    wake.name,
                    wake.idle_days,
                    wake.woke_on,
                    wake.cost_since + (row["cost"] or ZERO),
                    wake.requests_since + row["requests"],
                )
            previous = row["day"]
        if wake is not None:
            wakes.append(wake)
    wakes.sort(key=lambda w: (w.woke_on, w.cost_since), reverse=True)
    return wakes


@dataclass(frozen=True)
class ProjectSpend:
    """A project's spend in the range; ``cost`` None means no requests at all (not zero spend)."""

    slug: str | None
    name: str
    environment: str
    cost: Decimal | None
    requests: int
    tokens: int


def spend_by_project(*, organization: Organization, flt: UsageFilter, currency: str) -> list[ProjectSpend]:
    """Return every non-archived project (with or without data) plus "Unassigned" when it has requests.

    Two queries: the projects, and the rollup grouped by project.
    """
    grouped: dict[int | None, Mapping[str, Any]] = {
        r["project_id"]: r
        for r in daily_rollups(organization=organization, flt=flt)
        .values("project_id")
        .annotate(
            cost=_cost_in(currency),
            requests=Sum("requests"),
            tokens=Sum("input_tokens") + Sum("output_tokens"),
        )
        .order_by()
    }
    projects = Project.objects.filter(organization=organization, archived=False)
    if flt.project_ids:
        projects = projects.filter(pk__in=flt.project_ids)
    if flt.environments:
        projects = projects.filter(environment__in=flt.environments)
    result = []
    for project in projects:
        row = grouped.get(project.pk)
        result.append(
            ProjectSpend(
                project.slug,
                project.name,
                project.environment,
                (row["cost"] or ZERO) if row else None,
                (row["requests"] or 0) if row else 0,
                (row["tokens"] or 0) if row else 0,
            )
        )
    unassigned = grouped.get(None)
    if unassigned:
        result.append(
            ProjectSpend(
                None,
                "Unassigned",
                "",
                unassigned["cost"] or ZERO,
                unassigned["requests"] or 0,
                unassigned["tokens"] or 0,
            )
        )
    result.sort(key=lambda p: (p.cost is None, -(p.cost or ZERO), p.name))
    return result


def request_log(
    *, organization: Organization, flt: UsageFilter, status: str | None = None
) -> QuerySet[UsageRecord]:
    """Return raw records in the range, newest first: the one panel that reads raw rows.

    Served by the ``usage_record_org_time`` index (organization, occurred_at); paginate it.
    """
    start, end = local_day_bounds(flt.start, flt.end, organization.zoneinfo)
    qs = UsageRecord.objects.filter(organization=organization, occurred_at__gte=start, occurred_at__lt=end)
    if flt.project_ids:
        qs = qs.filter(project_id__in=flt.project_ids)
    if flt.environments:
        qs = qs.filter(project__environment__in=flt.environments)
    if flt.account_ids:
        qs = qs.filter(provider_account_id__in=flt.account_ids)
    if flt.key_ids:
        qs = qs.filter(api_key_id__in=flt.key_ids)
    if flt.models:
        qs = qs.filter(model__in=flt.models)
    if status:
        qs = qs.filter(status=status)
    return qs.select_related("api_key", "project").order_by("-occurred_at", "-pk")


def models_in_use(*, organization: Organization) -> list[str]:
    """Return every model name in the organization's daily rollup, for the filter's choices."""
    return list(
        UsageDaily.objects.filter(organization=organization)
        .values_list("model", flat=True)
        .distinct()
        .order_by("model")
    )


@dataclass(frozen=True)
class GroupSpend:
    group: str
    currency: str
    cost: Decimal
    requests: int
    input_tokens: int
    output_tokens: int
    unpriced_requests: int


# API group_by value -> rollup column that keys the group.
SPEND_GROUP_FIELDS = {"day": "day", "project": "project__slug", "model": "model", "key": "api_key__name"}


def spend_grouped(*, organization: Organization, flt: UsageFilter, group_by: str) -> list[GroupSpend]:
    """Return cost, requests and tokens per group and currency (the read API's ``/spend``), one query.

    Days are the organization's local days; empty project/key groups mean "unassigned" ("").
    """
    column = SPEND_GROUP_FIELDS[group_by]
    rows = (
        daily_rollups(organization=organization, flt=flt)
        .values(column, "currency")
        .annotate(
            sum_cost=Sum("cost"),
            sum_requests=Sum("requests"),
            sum_input=Sum("input_tokens"),
            sum_output=Sum("output_tokens"),
            sum_unpriced=Sum("unpriced_requests"),
        )
        .order_by(column, "currency")
    )
    return [
        GroupSpend(
            group=str(row[column]) if row[column] is not None else "",
            currency=row["currency"],
            cost=row["sum_cost"] or ZERO,
            requests=row["sum_requests"] or 0,
            input_tokens=row["sum_input"] or 0,
            output_tokens=row["sum_output"] or 0,
            unpriced_requests=row["sum_unpriced"] or 0,
        )
        for row in rows
    ]
