"""Usage reads. Dashboards aggregate the daily/hourly rollups in SQL; raw records only for the request log."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet, Sum
from django.utils import timezone

from projects.models import Organization

from .models import StreamState, UsageDaily

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
    result = []
    for row in rows:
        if group_by == "model":
            label = row["model"]
        elif group_by == "project":
            label = row["project__name"] or "Unassigned"
        else:
            label = "Spend"
        result.append(DailySpend(row["day"], label, row["cost"] or ZERO, row["requests"] or 0))
    return result


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
