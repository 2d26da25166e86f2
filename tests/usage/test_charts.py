"""Analytics chart functions: plain dicts that Plotly accepts, plotting exactly what the selectors returned."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import plotly.graph_objects as go

from usage import charts
from usage.selectors import (
    DailySpend,
    ErrorCount,
    HeatCell,
    KeySpend,
    ModelShare,
    TokenPeriod,
    UnitCostPoint,
)

WEEKS = [date(2026, 10, 26), date(2026, 11, 2), date(2026, 11, 9)]


def test_spend_over_periods_stacks_labels_on_the_period_axis_with_exact_hover() -> None:
    rows = [
        DailySpend(WEEKS[0], "gpt-4o", Decimal("1.005"), 3),
        DailySpend(WEEKS[2], "gpt-4o", Decimal("2"), 1),
        DailySpend(WEEKS[2], "claude", Decimal("0.5"), 1),
    ]
    figure = charts.spend_over_periods(rows, currency="USD", axis=WEEKS)
    go.Figure(figure)
    by_name = {trace["name"]: trace for trace in figure["data"]}
    assert by_name["gpt-4o"]["x"] == ["2026-10-26", "2026-11-02", "2026-11-09"]
    assert by_name["gpt-4o"]["customdata"] == ["$1.01", "$0.00", "$2.00"]
    assert by_name["claude"]["customdata"] == ["$0.00", "$0.00", "$0.50"]
    assert figure["layout"]["barmode"] == "stack"


def test_spend_over_periods_folds_labels_beyond_eight_into_other() -> None:
    rows = [DailySpend(WEEKS[0], f"m{n}", Decimal(n + 1), 1) for n in range(10)]
    figure = charts.spend_over_periods(rows, currency="USD", axis=WEEKS[:1])
    names = [trace["name"] for trace in figure["data"]]
    assert len(names) == 9 and names[-1] == "Other"
    assert figure["data"][-1]["customdata"] == ["$3.00"]  # m0 (1) + m1 (2)


def test_token_structure_stacks_disjoint_classes_that_add_up_to_all_tokens() -> None:
    period = TokenPeriod(WEEKS[1], 1000, 300, 100, 500, 120, 4)
    figure = charts.token_structure([period], axis=WEEKS)
    go.Figure(figure)
    stacked = sum(trace["y"][1] for trace in figure["data"])
    assert stacked == period.input_tokens + period.output_tokens
    assert [trace["y"][0] for trace in figure["data"]] == [0, 0, 0, 0, 0]
    assert [trace["name"] for trace in figure["data"]] == [
        "Uncached input",
        "Cache read",
        "Cache write",
        "Output",
        "Reasoning",
    ]


def test_model_shares_plot_three_shares_per_model() -> None:
    shares = [
        ModelShare("a", Decimal(3), 10, 100, Decimal(75), Decimal(50), Decimal(20)),
        ModelShare("b", Decimal(1), 10, 400, Decimal(25), Decimal(50), Decimal(80)),
    ]
    figure = charts.model_shares(shares)
    go.Figure(figure)
    assert [trace["name"] for trace in figure["data"]] == ["Spend", "Requests", "Tokens"]
    assert figure["data"][0]["y"] == ["b", "a"]
    assert figure["data"][2]["x"] == [80.0, 20.0]


def test_unit_cost_trend_marks_jumps_with_red_triangles_on_both_panels() -> None:
    points = [
        UnitCostPoint(WEEKS[0], "All", Decimal(1), 10, 1000, Decimal("0.1"), Decimal(1000)),
        UnitCostPoint(
            WEEKS[1],
            "All",
            Decimal(2),
            10,
            1000,
            Decimal("0.2"),
            Decimal(2000),
            per_request_jump=True,
            per_1m_jump=True,
        ),
    ]
    figure = charts.unit_cost_trend(points, currency="USD", axis=WEEKS)
    go.Figure(figure)
    markers = [t for t in figure["data"] if t["mode"] == "markers"]
    assert [(m["yaxis"], m["x"]) for m in markers] == [("y", ["2026-11-02"]), ("y2", ["2026-11-02"])]
    line = figure["data"][0]
    assert line["y"] == [1000.0, 2000.0, None]
    assert line["customdata"][2] == "—"
    # A unit cost is never negative: both axes start at zero, even for a flat series.
    assert figure["layout"]["yaxis"]["rangemode"] == figure["layout"]["yaxis2"]["rangemode"] == "tozero"


def test_peak_heatmap_places_cells_by_weekday_row_and_hour_column() -> None:
    cells = [HeatCell(1, 0, 5, Decimal("0.5")), HeatCell(7, 23, 9, Decimal("1.25"))]
    figure = charts.peak_heatmap(cells, currency="USD")
    go.Figure(figure)
    z = figure["data"][0]["z"]
    assert z[0][0] == 5 and z[6][23] == 9 and sum(map(sum, z)) == 14
    assert figure["data"][0]["customdata"][6][23] == "$1.25"


def test_errors_over_time_stacks_codes() -> None:
    counts = [ErrorCount(WEEKS[0], "429", 7), ErrorCount(WEEKS[2], "insufficient_balance", 2)]
    figure = charts.errors_over_time(counts, axis=WEEKS)
    go.Figure(figure)
    assert {t["name"]: t["y"] for t in figure["data"]} == {
        "429": [7, 0, 0],
        "insufficient_balance": [0, 0, 2],
    }


def test_key_spend_bars_skip_keys_without_spend_and_colour_unassigned_keys() -> None:
    keys = [
        KeySpend("a", "assigned", "P", "p", Decimal(2), 1, 0, None),
        KeySpend("b", "loose", None, None, Decimal(1), 1, 0, None),
        KeySpend("c", "idle", "P", "p", Decimal(0), 1, 1, None),
    ]
    figure = charts.key_spend_bars(keys, currency="USD")
    go.Figure(figure)
    assert figure["data"][0]["y"] == ["assigned", "loose"]
    assert figure["data"][0]["marker"]["color"] == ["#4f46e5", "#b45309"]
