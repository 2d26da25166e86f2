"""Billing figures (budget variance, balance history) as pure functions returning Plotly dicts.

Same conventions as ``usage.charts``: no database, hover money pre-formatted from Decimal, plotted
numbers are display-only floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from projects.money import format_money
from usage.charts import PALETTE, Figure, base_layout

from .models import BalanceSnapshot
from .selectors import BudgetVariance

SPARSE_POINTS = 40  # up to this many readings, draw markers too
STATE_COLOURS = {"on-track": "#047857", "at-risk": "#b45309", "over": "#b91c1c"}


def _num(amount: Decimal) -> float:
    return float(amount)  # display-only chart coordinate


def budget_variance_figure(rows: Sequence[BudgetVariance]) -> Figure:
    """Bars of actual and forecast as % of each budget, with the 100 % line.

    Percentages make budgets in different currencies comparable on one axis; the hover shows
    the amounts in each budget's own currency.
    """
    labels = [str(row.budget) for row in rows]
    actual_hover = [
        f"{format_money(r.variance.actual, r.budget.currency)} of {format_money(r.variance.budget, r.budget.currency)}"
        for r in rows
    ]
    forecast_hover = [format_money(r.variance.forecast, r.budget.currency) for r in rows]
    traces: list[dict[str, object]] = [
        {
            "type": "bar",
            "name": "Actual",
            "x": labels,
            "y": [_num(r.variance.used_percent) for r in rows],
            "customdata": actual_hover,
            "hovertemplate": "Actual: %{customdata} (%{y:.1f}%)<extra></extra>",
            "marker": {"color": [STATE_COLOURS[r.variance.state] for r in rows]},
        }
    ]
    if any(r.is_current for r in rows):
        traces.append(
            {
                "type": "bar",
                "name": "Forecast to month end",
                "x": labels,
                "y": [_num(r.variance.forecast / r.variance.budget * 100) for r in rows],
                "customdata": forecast_hover,
                "hovertemplate": "Forecast: %{customdata} (%{y:.1f}%)<extra></extra>",
                "marker": {"color": "rgba(79,70,229,0.35)", "line": {"color": PALETTE[0], "width": 1}},
            }
        )
    layout = base_layout(yaxis_title="% of budget", barmode="group", height=300)
    layout["yaxis"]["ticksuffix"] = "%"
    layout["hovermode"] = "x"
    layout["shapes"] = [
        {
            "type": "line",
            "xref": "paper",
            "x0": 0,
            "x1": 1,
            "y0": 100,
            "y1": 100,
            "line": {"color": "#b91c1c", "width": 1.5, "dash": "dash"},
        }
    ]
    return {"data": traces, "layout": layout}


def balance_history_figure(
    snapshots: Sequence[BalanceSnapshot],
    *,
    currency: str,
    window: tuple[datetime, datetime] | None = None,
) -> Figure:
    """Balance over time in currency; for gateways the raw quota on a second axis.

    Console entries (source "manual") are drawn as separate markers so drift stands out. ``window``
    pins the x axis to the period the page names (otherwise a single reading zooms the axis to
    milliseconds); a sparse history gets markers so lone readings are visible.
    """
    provider = [s for s in snapshots if s.source == "provider"]
    manual = [s for s in snapshots if s.source == "manual"]
    traces: list[dict[str, object]] = []
    mode = "lines+markers" if len(provider) <= SPARSE_POINTS else "lines"
    if provider:
        traces.append(
            {
                "type": "scatter",
                "mode": mode,
                "name": f"Balance ({currency})",
                "x": [s.taken_at.isoformat() for s in provider],
                "y": [_num(s.remaining) for s in provider],
                "customdata": [format_money(s.remaining, currency) for s in provider],
                "hovertemplate": "%{customdata}<extra></extra>",
                "line": {"color": PALETTE[0], "shape": "hv"},
            }
        )
    quota = [s for s in provider if s.raw_quota is not None]
    if quota:
        traces.append(
            {
                "type": "scatter",
                "mode": mode,
                "name": "Raw quota",
                "x": [s.taken_at.isoformat() for s in quota],
                "y": [s.raw_quota for s in quota],
                "yaxis": "y2",
                "hovertemplate": "%{y:,} quota<extra></extra>",
                "line": {"color": PALETTE[1], "dash": "dot", "shape": "hv"},
            }
        )
    if manual:
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "Console balance",
                "x": [s.taken_at.isoformat() for s in manual],
                "y": [_num(s.remaining) for s in manual],
                "customdata": [format_money(s.remaining, currency) for s in manual],
                "hovertemplate": "Console: %{customdata}<extra></extra>",
                "marker": {"color": PALETTE[3], "size": 9, "symbol": "diamond"},
            }
        )
    layout = base_layout(yaxis_title=f"Balance ({currency})", height=300)
    if quota:
        layout["yaxis2"] = {
            "title": {"text": "Quota", "standoff": 8},
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            "tickformat": "~s",  # 20M rather than 20,000,000 rounded to "20"
            "automargin": True,
            "rangemode": "tozero",
        }
        layout["margin"] = {**layout["margin"], "r": 56}
    # A balance is read against zero: how far it is from running out is the point of the chart.
    layout["yaxis"] = {**layout["yaxis"], "rangemode": "tozero"}
    if window is not None:
        pad = (window[1] - window[0]) / 60  # keeps the newest reading's marker off the plot edge
        layout["xaxis"] = {
            **layout["xaxis"],
            "range": [window[0].isoformat(), (window[1] + pad).isoformat()],
        }
    return {"data": traces, "layout": layout}
