"""Analytics panels: for one panel name, the selector calls, the figure and the table behind it.

A panel's table feeds both the HTML table under its chart and its CSV download, so the two never
disagree. Only the requested panel is computed (the explorer loads each one lazily with htmx).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.urls import reverse

from projects.models import Organization

from . import charts
from .forms import ExplorerQuery
from .models import RecordStatus, UsageRecord
from .selectors import (
    ZERO,
    cache_savings,
    errors_by_key_and_model,
    errors_by_period,
    keys_woken_after_idle,
    model_distribution,
    peak_hours,
    period_axis,
    request_log,
    retry_storms,
    spend_by_key,
    spend_by_period,
    token_summary,
    tokens_by_period,
    unit_cost_by_period,
)

REQUEST_LOG_PAGE_SIZE = 50
REQUEST_LOG_COUNT_CAP = 10_000


@dataclass(frozen=True)
class Column:
    """A table column; ``kind`` picks the HTML formatting (text, int, tokens, money, money6, percent,
    ratio, date, datetime, link, flag). CSV cells carry the exact value whatever the kind."""

    label: str
    kind: str = "text"

    @property
    def numeric(self) -> bool:
        return self.kind in {"int", "tokens", "money", "money6", "percent", "ratio"}


@dataclass(frozen=True)
class Link:
    text: str
    url: str

    def __str__(self) -> str:
        return self.text


@dataclass
class Table:
    name: str
    columns: list[Column]
    rows: Iterable[Sequence[object]]
    currency: str
    display_limit: int | None = None

    def html_rows(self) -> list[list[tuple[Column, object]]]:
        rows = list(self.rows)
        if self.display_limit is not None:
            rows = rows[: self.display_limit]
        return [list(zip(self.columns, row, strict=True)) for row in rows]

    @property
    def truncated(self) -> bool:
        return self.display_limit is not None and len(list(self.rows)) > self.display_limit

    def csv_rows(self) -> Iterator[Sequence[object]]:
        for row in self.rows:
            yield [cell.text if isinstance(cell, Link) else cell for cell in row]


@dataclass(frozen=True)
class PanelInput:
    organization: Organization
    query: ExplorerQuery
    currency: str
    page: str = "1"
    status: str = ""


@dataclass
class Panel:
    """A computed panel: ``has_data`` False means "no data" (an empty state), not zero."""

    name: str
    title: str
    has_data: bool
    figure: dict[str, Any] | None = None
    tables: dict[str, Table] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def table(self) -> Table | None:
        return self.tables.get("main")


def _key_link(org: Organization, public_id: str, name: str) -> Link | str:
    if not public_id:
        return name
    return Link(name, reverse("key_detail", kwargs={"org_slug": org.slug, "key_id": public_id}))


def _project_link(org: Organization, slug: str | None, name: str | None) -> Link | str:
    if not slug:
        return name or "Unassigned"
    return Link(name or slug, reverse("project_detail", kwargs={"org_slug": org.slug, "project_slug": slug}))


def spend_panel(ctx: PanelInput) -> Panel:
    q = ctx.query
    rows = spend_by_period(
        organization=ctx.organization,
        flt=q.flt,
        currency=ctx.currency,
        granularity=q.granularity,
        group_by=q.group_by,
    )
    axis = period_axis(q.flt.start, q.flt.end, q.granularity)
    ordered = sorted(rows, key=lambda r: (r.day, -r.cost, r.label))
    table = Table(
        "spend",
        [
            Column("Period start", "date"),
            Column(q.group_by.capitalize()),
            Column("Spend", "money"),
            Column("Requests", "int"),
        ],
        [[r.day, r.label, r.cost, r.requests] for r in ordered],
        ctx.currency,
        display_limit=60,
    )
    total = sum((r.cost for r in rows), ZERO) if rows else None
    return Panel(
        "spend",
        "Spend over time",
        bool(rows),
        charts.spend_over_periods(rows, currency=ctx.currency, axis=axis) if rows else None,
        {"main": table},
        {"total": total, "requests": sum(r.requests for r in rows)},
    )


def tokens_panel(ctx: PanelInput) -> Panel:
    q = ctx.query
    periods = tokens_by_period(organization=ctx.organization, flt=q.flt, granularity=q.granularity)
    summary = token_summary(periods)
    savings = cache_savings(organization=ctx.organization, flt=q.flt) if periods else []
    axis = period_axis(q.flt.start, q.flt.end, q.granularity)
    table = Table(
        "tokens",
        [
            Column("Period start", "date"),
            Column("Uncached input", "tokens"),
            Column("Cache read", "tokens"),
            Column("Cache write", "tokens"),
            Column("Output", "tokens"),
            Column("of which reasoning", "tokens"),
            Column("Requests", "int"),
        ],
        [
            [
                p.period,
                p.uncached_input_tokens,
                p.cache_read_tokens,
                p.cache_write_tokens,
                p.output_tokens,
                p.reasoning_tokens,
                p.requests,
            ]
            for p in periods
        ],
        ctx.currency,
        display_limit=60,
    )
    return Panel(
        "tokens",
        "Token structure",
        bool(periods),
        charts.token_structure(periods, axis=axis) if periods else None,
        {"main": table},
        {"summary": summary, "savings": savings},
    )


def models_panel(ctx: PanelInput) -> Panel:
    shares = model_distribution(organization=ctx.organization, flt=ctx.query.flt, currency=ctx.currency)
    table = Table(
        "models",
        [
            Column("Model"),
            Column("Spend", "money"),
            Column("Share of spend", "percent"),
            Column("Requests", "int"),
            Column("Share of requests", "percent"),
            Column("Tokens", "tokens"),
            Column("Share of tokens", "percent"),
            Column("Per 1M tokens", "money6"),
        ],
        [
            [
                s.model,
                s.cost,
                s.spend_share,
                s.requests,
                s.request_share,
                s.tokens,
                s.token_share,
                s.cost_per_1m_tokens,
            ]
            for s in shares
        ],
        ctx.currency,
    )
    return Panel(
        "models",
        "Model distribution",
        bool(shares),
        charts.model_shares(shares) if shares else None,
        {"main": table},
    )


def unit_cost_panel(ctx: PanelInput) -> Panel:
    q = ctx.query
    # Weekly unless the bar asks for months: day-to-day unit cost is mostly noise.
    granularity = "month" if q.granularity == "month" else "week"
    points = unit_cost_by_period(
        organization=ctx.organization,
        flt=q.flt,
        currency=ctx.currency,
        granularity=granularity,
        group_by=q.group_by,
    )
    axis = period_axis(q.flt.start, q.flt.end, granularity)
    table = Table(
        "unit-cost",
        [
            Column("Period start", "date"),
            Column(q.group_by.capitalize() + " (or All)"),
            Column("Spend", "money"),
            Column("Requests", "int"),
            Column("Tokens", "tokens"),
            Column("Per request", "money6"),
            Column("Per 1M tokens", "money6"),
            Column("Rose > 20 %", "flag"),
        ],
        [
            [
                p.period,
                p.label,
                p.cost,
                p.requests,
                p.tokens,
                p.per_request,
                p.per_1m_tokens,
                p.per_request_jump or p.per_1m_jump,
            ]
            for p in points
        ],
        ctx.currency,
        display_limit=40,
    )
    jumps = [p for p in points if p.label == "All" and (p.per_request_jump or p.per_1m_jump)]
    return Panel(
        "unit-cost",
        "Unit-cost trends",
        bool(points),
        charts.unit_cost_trend(points, currency=ctx.currency, axis=axis) if points else None,
        {"main": table},
        {"granularity": granularity, "jumps": jumps},
    )


WEEKDAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def peaks_panel(ctx: PanelInput) -> Panel:
    cells = peak_hours(organization=ctx.organization, flt=ctx.query.flt, currency=ctx.currency)
    busiest = sorted(cells, key=lambda c: (-c.requests, c.weekday, c.hour))
    table = Table(
        "peaks",
        [
            Column("Weekday"),
            Column("Hour (local)", "int"),
            Column("Requests", "int"),
            Column("Spend", "money"),
        ],
        [[WEEKDAY_NAMES[c.weekday - 1], c.hour, c.requests, c.cost] for c in busiest],
        ctx.currency,
        display_limit=10,
    )
    q = ctx.query
    partial_filter = bool(q.flt.project_ids or q.flt.key_ids or q.flt.account_ids or q.flt.environments)
    return Panel(
        "peaks",
        "Peak periods",
        bool(cells),
        charts.peak_heatmap(cells, currency=ctx.currency) if cells else None,
        {"main": table},
        {"organization_wide": partial_filter},
    )


def errors_panel(ctx: PanelInput) -> Panel:
    q = ctx.query
    org = ctx.organization
    counts = errors_by_period(organization=org, flt=q.flt, granularity=q.granularity)
    breakdown = errors_by_key_and_model(organization=org, flt=q.flt)
    storms = retry_storms(organization=org, flt=q.flt)
    axis = period_axis(q.flt.start, q.flt.end, q.granularity)
    main = Table(
        "errors",
        [Column("Key", "link"), Column("Model"), Column("Error code"), Column("Failed requests", "int")],
        [[_key_link(org, b.key_public_id, b.key_name), b.model, b.error_code, b.errors] for b in breakdown],
        ctx.currency,
        display_limit=25,
    )
    storm_table = Table(
        "storms",
        [
            Column("Day", "date"),
            Column("Key", "link"),
            Column("Failed", "int"),
            Column("Requests", "int"),
            Column("Error share", "percent"),
        ],
        [
            [s.day, _key_link(org, s.key_public_id, s.key_name), s.errors, s.requests, s.error_share]
            for s in storms
        ],
        ctx.currency,
    )
    return Panel(
        "errors",
        "Errors and retries",
        bool(counts),
        charts.errors_over_time(counts, axis=axis) if counts else None,
        {"main": main, "storms": storm_table},
        {"total_errors": sum(c.requests for c in counts)},
    )


def keys_panel(ctx: PanelInput) -> Panel:
    org = ctx.organization
    keys = spend_by_key(organization=org, flt=ctx.query.flt, currency=ctx.currency)
    woken = keys_woken_after_idle(organization=org, flt=ctx.query.flt, currency=ctx.currency) if keys else []
    unassigned = [k for k in keys if k.unassigned and k.cost > 0]
    main = Table(
        "keys",
        [
            Column("Key", "link"),
            Column("Project", "link"),
            Column("Spend", "money"),
            Column("Requests", "int"),
            Column("Failed", "int"),
            Column("Last used", "datetime"),
        ],
        [
            [
                _key_link(org, k.public_id, k.name),
                _project_link(org, k.project_slug, k.project_name) if k.public_id else "",
                k.cost,
                k.requests,
                k.errors,
                k.last_used_at,
            ]
            for k in keys
        ],
        ctx.currency,
        display_limit=30,
    )
    woken_table = Table(
        "woken",
        [
            Column("Key", "link"),
            Column("Idle days", "int"),
            Column("Woke on", "date"),
            Column("Spend since", "money"),
            Column("Requests since", "int"),
        ],
        [
            [_key_link(org, w.public_id, w.name), w.idle_days, w.woke_on, w.cost_since, w.requests_since]
            for w in woken
        ],
        ctx.currency,
    )
    return Panel(
        "keys",
        "Keys",
        bool(keys),
        charts.key_spend_bars(keys, currency=ctx.currency) if any(k.cost > 0 for k in keys) else None,
        {"main": main, "woken": woken_table},
        {"unassigned": unassigned},
    )


def _record_row(org: Organization, record: UsageRecord) -> list[object]:
    key = record.api_key
    return [
        record.occurred_at,
        _project_link(org, record.project.slug, record.project.name) if record.project else "",
        _key_link(org, str(key.public_id), key.name) if key else "",
        record.model,
        record.error_code or record.status if record.status == RecordStatus.ERROR else record.status,
        record.input_tokens,
        record.cache_read_tokens,
        record.output_tokens,
        record.requests,
        record.cost,
        record.currency,
        record.latency_ms,
    ]


REQUEST_COLUMNS = [
    Column("Time (local)", "datetime"),
    Column("Project", "link"),
    Column("Key", "link"),
    Column("Model"),
    Column("Status"),
    Column("Input", "tokens"),
    Column("Cache read", "tokens"),
    Column("Output", "tokens"),
    Column("Requests", "int"),
    Column("Cost", "money6"),
    Column("Currency"),
    Column("Latency ms", "int"),
]


class CappedPaginator(Paginator):  # type: ignore[type-arg]  # generic only in the stubs
    """A Paginator that counts at most ``REQUEST_LOG_COUNT_CAP`` + 1 rows.

    The request log is the one panel over raw records: an exact COUNT(*) of a 30-day window at
    10M records took longer than the page itself. Past the cap the page says "more than …" and
    stops offering older pages there (the CSV export has every row).
    """

    def __init__(self, records: QuerySet[UsageRecord], per_page: int) -> None:
        super().__init__(records, per_page)
        self.records = records

    @cached_property
    def count(self) -> int:
        return self.records[: REQUEST_LOG_COUNT_CAP + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > REQUEST_LOG_COUNT_CAP


def requests_panel(ctx: PanelInput) -> Panel:
    org = ctx.organization
    status = ctx.status if ctx.status in RecordStatus.values else ""
    records = request_log(organization=org, flt=ctx.query.flt, status=status or None)
    page = CappedPaginator(records, REQUEST_LOG_PAGE_SIZE).get_page(ctx.page)
    table = Table("requests", REQUEST_COLUMNS, [_record_row(org, r) for r in page.object_list], ctx.currency)
    return Panel(
        "requests",
        "Request log",
        bool(page.object_list),
        None,
        {"main": table},
        {"page": page, "status": status},
    )


def requests_csv_rows(ctx: PanelInput) -> Iterator[Sequence[object]]:
    """Every record of the filter (not just one page), streamed from the database in chunks."""
    status = ctx.status if ctx.status in RecordStatus.values else ""
    records = request_log(organization=ctx.organization, flt=ctx.query.flt, status=status or None)
    for record in records.iterator(chunk_size=2000):
        yield [
            cell.text if isinstance(cell, Link) else cell for cell in _record_row(ctx.organization, record)
        ]


@dataclass(frozen=True)
class PanelSpec:
    name: str
    title: str
    build: Callable[[PanelInput], Panel]


PANELS: dict[str, PanelSpec] = {
    spec.name: spec
    for spec in (
        PanelSpec("spend", "Spend over time", spend_panel),
        PanelSpec("tokens", "Token structure", tokens_panel),
        PanelSpec("models", "Model distribution", models_panel),
        PanelSpec("unit-cost", "Unit-cost trends", unit_cost_panel),
        PanelSpec("peaks", "Peak periods", peaks_panel),
        PanelSpec("errors", "Errors and retries", errors_panel),
        PanelSpec("keys", "Keys", keys_panel),
        PanelSpec("requests", "Request log", requests_panel),
    )
}
