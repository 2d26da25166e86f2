"""Plotly figures as pure functions of selector output: no database, no request.

Figures are plain dicts in Plotly's JSON schema (building ``go.Figure`` objects validates every
property and costs milliseconds per trace; tests validate the dicts with ``go.Figure`` instead).
Money in hover text is pre-formatted from Decimal on the server; the numbers the chart plots are
display-only floats and are never read back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from projects.money import format_money

from .selectors import (
    DailySpend,
    ErrorCount,
    HeatCell,
    KeySpend,
    ModelShare,
    RankedSpend,
    TokenPeriod,
    UnitCostPoint,
)

Figure = dict[str, Any]

PALETTE = [
    "#4f46e5",
    "#0ea5e9",
    "#10b981",
    "#f59e0b",
    "#ef4444",
    "#8b5cf6",
    "#14b8a6",
    "#f97316",
    "#64748b",
    "#ec4899",
    "#84cc16",
    "#06b6d4",
]
MAX_SERIES = 8
FONT = {"family": "Inter, system-ui, -apple-system, Segoe UI, sans-serif", "size": 12, "color": "#334155"}


def _plot_number(amount: Decimal) -> float:
    """Chart coordinates only (Plotly needs JSON numbers); the exact value is in the hover text."""
    return float(amount)  # display-only: never summed or stored


def base_layout(*, yaxis_title: str = "", barmode: str | None = None, height: int = 320) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "height": height,
        "margin": {"l": 56, "r": 16, "t": 16, "b": 40},
        "font": FONT,
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "hovermode": "x unified",
        "legend": {"orientation": "h", "y": -0.18, "x": 0},
        "xaxis": {"gridcolor": "#eef2f7", "linecolor": "#cbd5e1"},
        "yaxis": {"gridcolor": "#eef2f7", "zerolinecolor": "#cbd5e1", "title": {"text": yaxis_title}},
    }
    if barmode:
        layout["barmode"] = barmode
    return layout


def _day_axis(start: date, end: date) -> list[date]:
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def _top_labels(rows: Sequence[DailySpend], limit: int = MAX_SERIES) -> list[str]:
    totals: dict[str, Decimal] = {}
    for row in rows:
        totals[row.label] = totals.get(row.label, Decimal(0)) + row.cost
    return [label for label, _ in sorted(totals.items(), key=lambda item: item[1], reverse=True)][:limit]


def spend_over_time(rows: Sequence[DailySpend], *, currency: str, start: date, end: date) -> Figure:
    """Stacked daily bars per label (model or project); labels beyond the top 8 fold into "Other".

    Every day in [start, end] is on the axis, so a day without spend shows as a gap, not a skip.
    """
    days = _day_axis(start, end)
    top = _top_labels(rows)
    by_label: dict[str, dict[date, Decimal]] = {label: {} for label in top}
    for row in rows:
        label = row.label if row.label in by_label else "Other"
        by_label.setdefault(label, {})
        by_label[label][row.day] = by_label[label].get(row.day, Decimal(0)) + row.cost
    traces = []
    for index, (label, per_day) in enumerate(by_label.items()):
        values = [per_day.get(day, Decimal(0)) for day in days]
        traces.append(
            {
                "type": "bar",
                "name": label,
                "x": [day.isoformat() for day in days],
                "y": [_plot_number(v) for v in values],
                "customdata": [format_money(v, currency) for v in values],
                "hovertemplate": "%{fullData.name}: %{customdata}<extra></extra>",
                "marker": {"color": PALETTE[index % len(PALETTE)]},
            }
        )
    layout = base_layout(yaxis_title=f"Spend ({currency})", barmode="stack")
    layout["yaxis"]["tickprefix"] = "$" if currency == "USD" else ""
    return {"data": traces, "layout": layout}


def share_donut(items: Sequence[RankedSpend], *, currency: str) -> Figure:
    """A donut of spend share; the hover shows the exact formatted amount."""
    return {
        "data": [
            {
                "type": "pie",
                "hole": 0.55,
                "labels": [item.label for item in items],
                "values": [_plot_number(item.cost) for item in items],
                "customdata": [format_money(item.cost, currency) for item in items],
                "hovertemplate": "%{label}: %{customdata} (%{percent})<extra></extra>",
                "marker": {"colors": PALETTE[: len(items)]},
                "sort": False,
                "textinfo": "percent",
            }
        ],
        "layout": {**base_layout(height=280), "showlegend": True, "hovermode": "closest"},
    }


# --- Analytics explorer (issue 4) ---

WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
JUMP_COLOR = "#b91c1c"


def _axis_labels(axis: Sequence[date]) -> list[str]:
    return [day.isoformat() for day in axis]


def spend_over_periods(rows: Sequence[DailySpend], *, currency: str, axis: Sequence[date]) -> Figure:
    """Stacked bars per label over period starts (day, week or month); beyond the top 8 folds into "Other".

    ``rows[i].day`` is a period start on ``axis``; periods without spend show as gaps.
    """
    top = _top_labels(rows)
    by_label: dict[str, dict[date, Decimal]] = {label: {} for label in top}
    for row in rows:
        label = row.label if row.label in by_label else "Other"
        per_period = by_label.setdefault(label, {})
        per_period[row.day] = per_period.get(row.day, Decimal(0)) + row.cost
    traces = []
    for index, (label, per_period) in enumerate(by_label.items()):
        values = [per_period.get(day, Decimal(0)) for day in axis]
        traces.append(
            {
                "type": "bar",
                "name": label,
                "x": _axis_labels(axis),
                "y": [_plot_number(v) for v in values],
                "customdata": [format_money(v, currency) for v in values],
                "hovertemplate": "%{fullData.name}: %{customdata}<extra></extra>",
                "marker": {"color": PALETTE[index % len(PALETTE)]},
            }
        )
    layout = base_layout(yaxis_title=f"Spend ({currency})", barmode="stack")
    layout["yaxis"]["tickprefix"] = "$" if currency == "USD" else ""
    return {"data": traces, "layout": layout}


def token_structure(periods: Sequence[TokenPeriod], *, axis: Sequence[date]) -> Figure:
    """Stacked token classes per period: uncached input, cache read, cache write, output, reasoning.

    The five classes are disjoint, so the stack height is all tokens (input + output).
    """
    by_period = {p.period: p for p in periods}
    classes = [
        ("Uncached input", "uncached_input_tokens", "#4f46e5"),
        ("Cache read", "cache_read_tokens", "#10b981"),
        ("Cache write", "cache_write_tokens", "#f59e0b"),
        ("Output", "visible_output_tokens", "#0ea5e9"),
        ("Reasoning", "reasoning_tokens", "#8b5cf6"),
    ]
    traces = []
    for name, attribute, color in classes:
        values = [getattr(by_period[day], attribute) if day in by_period else 0 for day in axis]
        traces.append(
            {
                "type": "bar",
                "name": name,
                "x": _axis_labels(axis),
                "y": values,
                "hovertemplate": "%{fullData.name}: %{y:,}<extra></extra>",
                "marker": {"color": color},
            }
        )
    return {"data": traces, "layout": base_layout(yaxis_title="Tokens", barmode="stack")}


def model_shares(shares: Sequence[ModelShare], *, limit: int = 10) -> Figure:
    """Grouped horizontal bars: each model's share of spend, of requests and of tokens (percent)."""
    items = list(shares)[:limit]
    labels = [item.model for item in reversed(items)]
    series = [
        ("Spend", "spend_share", "#4f46e5"),
        ("Requests", "request_share", "#0ea5e9"),
        ("Tokens", "token_share", "#10b981"),
    ]
    traces = []
    for name, attribute, color in series:
        values = [getattr(item, attribute) for item in reversed(items)]
        traces.append(
            {
                "type": "bar",
                "orientation": "h",
                "name": name,
                "y": labels,
                "x": [_plot_number(v) if v is not None else None for v in values],
                "hovertemplate": "%{y} · %{fullData.name}: %{x:.1f}%<extra></extra>",
                "marker": {"color": color},
            }
        )
    layout = base_layout(barmode="group", height=max(260, 70 + 48 * len(items)))
    layout["xaxis"] = {**layout["xaxis"], "ticksuffix": "%", "rangemode": "tozero"}
    layout["yaxis"] = {**layout["yaxis"], "automargin": True}
    layout["hovermode"] = "closest"
    return {"data": traces, "layout": layout}


def unit_cost_trend(
    points: Sequence[UnitCostPoint], *, currency: str, axis: Sequence[date], limit: int = 6
) -> Figure:
    """Two stacked panels: cost per 1M tokens (top) and cost per request (bottom), one line per label.

    Periods whose unit cost rose more than 20 % over the previous period carry a red triangle.
    """
    labels: list[str] = []
    for point in points:
        if point.label not in labels:
            labels.append(point.label)
    labels = labels[:limit]
    traces: list[dict[str, Any]] = []
    for index, label in enumerate(labels):
        mine = {p.period: p for p in points if p.label == label}
        color = "#0f172a" if label == "All" else PALETTE[index % len(PALETTE)]
        for attribute, jump_attr, axis_name, show in (
            ("per_1m_tokens", "per_1m_jump", "y", True),
            ("per_request", "per_request_jump", "y2", False),
        ):
            values = [getattr(mine[day], attribute) if day in mine else None for day in axis]
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": label,
                    "legendgroup": label,
                    "showlegend": show,
                    "yaxis": axis_name,
                    "x": _axis_labels(axis),
                    "y": [_plot_number(v) if v is not None else None for v in values],
                    "customdata": [format_money(v, currency, places=6) for v in values],
                    "hovertemplate": "%{fullData.name}: %{customdata}<extra></extra>",
                    "line": {"color": color, "width": 3 if label == "All" else 2},
                    "connectgaps": False,
                }
            )
            jumps = [day for day in axis if day in mine and getattr(mine[day], jump_attr)]
            if jumps:
                traces.append(
                    {
                        "type": "scatter",
                        "mode": "markers",
                        "name": f"{label}: +20 % or more",
                        "legendgroup": label,
                        "showlegend": False,
                        "yaxis": axis_name,
                        "x": _axis_labels(jumps),
                        "y": [_plot_number(getattr(mine[day], attribute)) for day in jumps],
                        "marker": {"symbol": "triangle-up", "size": 13, "color": JUMP_COLOR},
                        "hovertemplate": "rose > 20 % vs previous period<extra></extra>",
                    }
                )
    layout = base_layout(height=420)
    prefix = "$" if currency == "USD" else ""
    layout["yaxis"] = {
        **layout["yaxis"],
        "domain": [0.55, 1],
        "title": {"text": "per 1M tokens"},
        "tickprefix": prefix,
        # Unit costs are never negative; from zero, a flat series is not drawn around a -$0.5 axis.
        "rangemode": "tozero",
    }
    layout["yaxis2"] = {
        "domain": [0, 0.42],
        "gridcolor": "#eef2f7",
        "title": {"text": "per request"},
        "tickprefix": prefix,
        "rangemode": "tozero",
        "anchor": "x",
    }
    layout["legend"] = {"orientation": "h", "y": -0.12, "x": 0}
    return {"data": traces, "layout": layout}


def peak_heatmap(cells: Sequence[HeatCell], *, currency: str) -> Figure:
    """Hour (x, local) x weekday (y, Monday on top) heatmap of requests; hover adds the exact spend."""
    requests = [[0 for _ in range(24)] for _ in range(7)]
    costs = [[format_money(Decimal(0), currency) for _ in range(24)] for _ in range(7)]
    for cell in cells:
        requests[cell.weekday - 1][cell.hour] = cell.requests
        costs[cell.weekday - 1][cell.hour] = format_money(cell.cost, currency)
    layout = base_layout(height=300)
    layout["hovermode"] = "closest"
    layout["xaxis"] = {**layout["xaxis"], "title": {"text": "Hour (local)"}, "dtick": 3}
    layout["yaxis"] = {**layout["yaxis"], "autorange": "reversed", "title": {"text": ""}}
    return {
        "data": [
            {
                "type": "heatmap",
                "x": list(range(24)),
                "y": WEEKDAYS,
                "z": requests,
                "customdata": costs,
                "colorscale": [[0, "#f1f5f9"], [0.5, "#818cf8"], [1, "#312e81"]],
                "hovertemplate": "%{y} %{x}:00 · %{z:,} requests · %{customdata}<extra></extra>",
                "colorbar": {"title": {"text": "requests"}, "thickness": 10},
            }
        ],
        "layout": layout,
    }


def errors_over_time(counts: Sequence[ErrorCount], *, axis: Sequence[date]) -> Figure:
    """Stacked bars of failed requests per period and error code (top 8 codes, the rest as "other")."""
    totals: dict[str, int] = {}
    for count in counts:
        totals[count.error_code] = totals.get(count.error_code, 0) + count.requests
    top = [code for code, _ in sorted(totals.items(), key=lambda item: item[1], reverse=True)][:MAX_SERIES]
    by_code: dict[str, dict[date, int]] = {code: {} for code in top}
    for count in counts:
        code = count.error_code if count.error_code in by_code else "other"
        per_period = by_code.setdefault(code, {})
        per_period[count.period] = per_period.get(count.period, 0) + count.requests
    error_palette = ["#b91c1c", "#f59e0b", "#8b5cf6", "#0ea5e9", "#ec4899", "#64748b", "#14b8a6", "#84cc16"]
    traces = [
        {
            "type": "bar",
            "name": code,
            "x": _axis_labels(axis),
            "y": [per_period.get(day, 0) for day in axis],
            "hovertemplate": "%{fullData.name}: %{y:,}<extra></extra>",
            "marker": {"color": error_palette[index % len(error_palette)]},
        }
        for index, (code, per_period) in enumerate(by_code.items())
    ]
    return {"data": traces, "layout": base_layout(yaxis_title="Failed requests", barmode="stack")}


def key_spend_bars(keys: Sequence[KeySpend], *, currency: str, limit: int = 10) -> Figure:
    """Horizontal bars of the top keys by spend; unassigned keys in amber."""
    items = [key for key in keys if key.cost > 0][:limit]
    layout = base_layout(height=max(220, 60 + 30 * len(items)))
    layout["yaxis"] = {**layout["yaxis"], "automargin": True, "autorange": "reversed"}
    layout["xaxis"] = {**layout["xaxis"], "tickprefix": "$" if currency == "USD" else ""}
    layout["hovermode"] = "closest"
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "y": [key.name for key in items],
                "x": [_plot_number(key.cost) for key in items],
                "customdata": [format_money(key.cost, currency) for key in items],
                "hovertemplate": "%{y}: %{customdata}<extra></extra>",
                "marker": {"color": ["#b45309" if key.unassigned else "#4f46e5" for key in items]},
            }
        ],
        "layout": layout,
    }
