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

from .selectors import DailySpend, RankedSpend

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
