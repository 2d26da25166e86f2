"""The money rules with exact numbers: runway, forecast, variance, thresholds, top-ups, auto-recharge, credit lots."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pytest

from billing import rules
from billing.rules import CreditLot, LedgerEvent

TODAY = date(2026, 11, 20)


def test_trailing_average_uses_the_seven_full_days_before_today_and_counts_empty_days_as_zero() -> None:
    daily = {
        date(2026, 11, 12): D("1000"),  # 8 days ago: outside the window
        date(2026, 11, 13): D("10"),
        date(2026, 11, 19): D("4"),
        TODAY: D("100"),  # today is partial: excluded
    }
    assert rules.trailing_average(daily, today=TODAY) == D("2")


def test_forecast_is_month_to_date_plus_average_times_days_left() -> None:
    # November has 30 days: 10 left after the 20th.
    assert rules.month_forecast(month_to_date=D("150"), average_daily=D("10"), today=TODAY) == D("250")
    # Leap February: 2 days left after the 27th; none on the last day.
    assert rules.month_forecast(month_to_date=D("1"), average_daily=D("0.5"), today=date(2028, 2, 27)) == D(
        "2.0"
    )
    assert rules.month_forecast(month_to_date=D("1"), average_daily=D("9"), today=date(2026, 11, 30)) == D(
        "1"
    )


def test_variance_is_actual_minus_budget_as_amount_and_percent() -> None:
    v = rules.budget_variance(budget=D("200"), actual=D("150"), forecast=D("250"))
    assert (v.amount, v.percent, v.used_percent, v.state) == (D("-50"), D("-25"), D("75"), "at-risk")
    over = rules.budget_variance(budget=D("200"), actual=D("210"), forecast=D("300"))
    assert (over.amount, over.percent, over.state) == (D("10"), D("5"), "over")
    on_track = rules.budget_variance(budget=D("200"), actual=D("150"), forecast=D("190"))
    assert on_track.state == "on-track"


def test_spending_exactly_the_budget_is_not_over_it() -> None:
    v = rules.budget_variance(budget=D("200"), actual=D("200"), forecast=D("200"))
    assert (v.amount, v.state) == (D("0"), "on-track")


def test_a_closed_month_forecasts_its_actual() -> None:
    v = rules.budget_variance(budget=D("100"), actual=D("120.50"))
    assert (v.forecast, v.state) == (D("120.50"), "over")


def test_a_threshold_is_crossed_when_spend_reaches_it_exactly() -> None:
    assert rules.thresholds_crossed(actual=D("80"), budget=D("100"), thresholds=[50, 80, 100]) == [50, 80]
    assert rules.thresholds_crossed(actual=D("79.99"), budget=D("100"), thresholds=[100, 50, 80]) == [50]
    assert rules.thresholds_crossed(actual=D("0"), budget=D("100"), thresholds=[50]) == []


def test_thresholds_parse_from_text_and_reject_nonsense() -> None:
    assert rules.parse_thresholds("80, 50,100%") == [50, 80, 100]
    for bad in ["", "0", "abc", "50, 1001", "12.5"]:
        with pytest.raises(ValueError):
            rules.parse_thresholds(bad)


def _week(values: list[str]) -> dict[date, D]:
    return {TODAY - timedelta(days=7 - n): D(v) for n, v in enumerate(values)}


def test_runway_divides_the_balance_by_the_seven_day_average_with_a_min_max_band() -> None:
    daily = _week(["2", "4", "6", "8", "10", "12", "14"])  # sum 56, average 8
    r = rules.runway(balance=D("100"), daily=daily, today=TODAY)
    assert r.average_daily == D("8")
    assert r.days == D("12.5")
    assert r.low_days == D("100") / D("14")  # at the busiest day's rate
    assert r.high_days == D("50")  # at the quietest day's rate
    assert r.runs_out_on == date(2026, 12, 2)  # today + 12 whole days


def test_runway_without_recent_spend_has_no_end_and_a_quiet_day_opens_the_band() -> None:
    assert rules.runway(balance=D("100"), daily={}, today=TODAY).days is None
    r = rules.runway(balance=D("70"), daily=_week(["0", "7", "7", "7", "7", "7", "14"]), today=TODAY)
    assert (r.days, r.high_days, r.low_days) == (D("10"), None, D("5"))


def test_runway_of_an_empty_balance_is_zero_days_and_runs_out_today() -> None:
    r = rules.runway(balance=D("0"), daily=_week(["1"] * 7), today=TODAY)
    assert (r.days, r.runs_out_on) == (D("0"), TODAY)


def test_suggested_topup_is_average_times_days_times_safety_factor() -> None:
    assert rules.suggested_topup(average_daily=D("8"), safety_factor=D("1.5")) == D("360.0")
    assert rules.suggested_topup(average_daily=D("8"), days_to_cover=14, safety_factor=D("1.2")) == D("134.4")


def test_production_spend_picks_the_production_safety_factor() -> None:
    assert rules.safety_factor_for(["testing", "production"]) == ("production", D("1.5"))
    assert rules.safety_factor_for(["staging"]) == ("testing", D("1.2"))
    assert rules.safety_factor_for([]) == ("testing", D("1.2"))


def test_a_day_above_factor_times_its_fourteen_day_baseline_is_an_anomaly() -> None:
    daily = {TODAY - timedelta(days=n): D("2") for n in range(1, 15)}  # baseline 28 / 14 = 2
    assert rules.spend_anomaly(
        daily={**daily, TODAY: D("7")}, day=TODAY, factor=D("3"), min_amount=D("1")
    ) == (
        D("7"),
        D("2"),
    )
    # Exactly 3x is not "far above"; a small day never alerts.
    assert (
        rules.spend_anomaly(daily={**daily, TODAY: D("6")}, day=TODAY, factor=D("3"), min_amount=D("1"))
        is None
    )
    assert (
        rules.spend_anomaly(daily={**daily, TODAY: D("7")}, day=TODAY, factor=D("3"), min_amount=D("10"))
        is None
    )


def _at(day: int) -> datetime:
    return datetime(2026, 11, day, 12, tzinfo=UTC)


def test_auto_recharge_adds_only_the_remaining_allowance_then_stops_for_the_month() -> None:
    month = rules.auto_recharge_month(
        opening_balance=D("15"),
        threshold=D("10"),
        amount=D("20"),
        monthly_limit=D("50"),
        events=[
            LedgerEvent(_at(1), "spend", D("6")),  # 9 -> recharge 20 -> 29
            LedgerEvent(_at(2), "spend", D("20")),  # 9 -> recharge 20 -> 29 (40 used)
            LedgerEvent(_at(3), "manual_topup", D("5")),  # 34, does not count toward the limit
            LedgerEvent(_at(4), "spend", D("30")),  # 4 -> only 10 left of the limit -> 14
            LedgerEvent(_at(5), "spend", D("10")),  # 4 -> limit reached, nothing
            LedgerEvent(_at(6), "spend", D("10")),  # 0: 6 of the 10 could not be spent
        ],
    )
    assert [r.added for r in month.recharges] == [D("20"), D("20"), D("10")]
    assert [r.at for r in month.recharges] == [_at(1), _at(2), _at(4)]
    assert month.total_added == D("50")
    assert month.limit_reached is True
    assert month.closing_balance == D("0")
    assert month.refused_spend == D("6")


def test_manual_topups_do_not_use_up_the_auto_recharge_limit() -> None:
    month = rules.auto_recharge_month(
        opening_balance=D("5"),
        threshold=D("10"),
        amount=D("20"),
        monthly_limit=D("20"),
        events=[
            LedgerEvent(_at(1), "manual_topup", D("100")),
            LedgerEvent(_at(2), "spend", D("99")),  # 6 -> full 20 despite 100 topped up by hand
        ],
    )
    assert month.total_added == D("20")
    assert month.closing_balance == D("26")


def test_auto_recharge_counts_what_was_already_recharged_this_month() -> None:
    month = rules.auto_recharge_month(
        opening_balance=D("9"),
        threshold=D("10"),
        amount=D("20"),
        monthly_limit=D("50"),
        events=[LedgerEvent(_at(1), "spend", D("1"))],
        already_recharged=D("45"),
    )
    assert month.total_added == D("5")
    assert rules.auto_recharge_allowance(monthly_limit=D("50"), recharged=D("60")) == D("0")
    assert rules.auto_recharge_allowance(monthly_limit=None, recharged=D("60")) is None


def test_auto_recharge_triggers_strictly_below_the_threshold_and_has_no_cap_without_a_limit() -> None:
    at_threshold = rules.auto_recharge_month(
        opening_balance=D("20"),
        threshold=D("10"),
        amount=D("20"),
        monthly_limit=None,
        events=[LedgerEvent(_at(1), "spend", D("10"))],
    )
    assert at_threshold.recharges == []
    unlimited = rules.auto_recharge_month(
        opening_balance=D("20"),
        threshold=D("10"),
        amount=D("20"),
        monthly_limit=None,
        events=[LedgerEvent(_at(d), "spend", D("25")) for d in (1, 2, 3)],
    )
    assert unlimited.total_added == D("60")
    assert unlimited.limit_reached is False


def test_openai_credits_expire_one_year_after_purchase() -> None:
    assert rules.one_year_after(date(2025, 3, 15)) == date(2026, 3, 15)
    assert rules.one_year_after(date(2024, 2, 29)) == date(2025, 2, 28)


LOTS = [
    CreditLot("A", "paid", D("100"), date(2025, 1, 10), date(2026, 1, 10)),
    CreditLot("G", "granted", D("5"), date(2025, 1, 15), date(2025, 4, 1)),
    CreditLot("B", "paid", D("50"), date(2025, 3, 1), date(2026, 3, 1)),
]


def test_granted_credits_are_spent_before_older_paid_ones_then_paid_first_in_first_out() -> None:
    spend = {date(2025, 1, 12): D("3"), date(2025, 1, 20): D("4"), date(2025, 3, 15): D("10")}
    ledger = rules.credit_lots_consume(LOTS, spend, today=date(2025, 6, 1))
    used = {s.lot.ref: (s.used, s.remaining, s.expired_unused) for s in ledger.lots}
    # Jan 12: only A exists. Jan 20: G first. Mar 15: G's last 1, then 9 from A (older than B).
    assert used == {
        "G": (D("5"), D("0"), D("0")),
        "A": (D("12"), D("88"), D("0")),
        "B": (D("0"), D("50"), D("0")),
    }
    assert ledger.balance == D("138")
    assert ledger.wasted == D("0")


def test_credit_left_in_an_expired_lot_is_waste_not_balance() -> None:
    ledger = rules.credit_lots_consume(LOTS, {date(2025, 1, 12): D("3")}, today=date(2025, 4, 1))
    assert ledger.wasted == D("5")
    assert ledger.balance == D("147")


def test_spend_after_a_lot_expires_cannot_use_it() -> None:
    lots = [CreditLot("A", "paid", D("10"), date(2025, 1, 1), date(2025, 2, 1))]
    ledger = rules.credit_lots_consume(lots, {date(2025, 2, 1): D("4")}, today=date(2025, 3, 1))
    assert (ledger.uncovered, ledger.wasted, ledger.balance) == (D("4"), D("10"), D("0"))


def test_lots_expiring_within_thirty_days_are_flagged() -> None:
    ledger = rules.credit_lots_consume(LOTS, {}, today=date(2025, 12, 15))
    assert [s.lot.ref for s in ledger.expiring_within()] == ["A"]  # A: Jan 10; B: Mar 1 is later
    assert [s.lot.ref for s in ledger.expiring_within(90)] == ["A", "B"]


# --- Top-up planner ----------------------------------------------------------------------------------

OPENAI_TERMS = rules.PURCHASE_TERMS["openai"]


def test_planner_is_average_times_days_times_factor_rounded_up_to_the_cent() -> None:
    plan = rules.plan_topup(average_daily=D("1.234"), safety_factor=D("1.2"), days_to_cover=30)
    assert plan.raw == D("44.43")  # 44.424 -> 44.43
    assert (plan.amount, plan.reason, plan.usable_before_expiry) == (D("44.43"), "", None)


def test_planner_raises_a_small_suggestion_to_the_minimum_purchase() -> None:
    plan = rules.plan_topup(average_daily=D("0.10"), safety_factor=D("1.2"), terms=OPENAI_TERMS)
    assert plan.raw == D("3.60")
    assert (plan.amount, plan.reason) == (D("5"), "minimum")
    assert plan.usable_before_expiry == D("36.50")  # 0.10 x 365


def test_planner_never_suggests_more_than_can_be_spent_before_expiry() -> None:
    # 2/day x 365 days x 1.5 = 1095, but the 700 already held is spent first: 730 - 700 = 30 usable.
    plan = rules.plan_topup(
        average_daily=D("2"), safety_factor=D("1.5"), days_to_cover=365, terms=OPENAI_TERMS, balance=D("700")
    )
    assert plan.raw == D("1095.00")
    assert (plan.amount, plan.reason, plan.usable_before_expiry) == (D("30.00"), "expiry", D("30.00"))
    # Exactly the usable amount is allowed.
    exact = rules.plan_topup(
        average_daily=D("2"), safety_factor=D("1"), days_to_cover=15, terms=OPENAI_TERMS, balance=D("700")
    )
    assert (exact.amount, exact.reason) == (D("30.00"), "")


def test_planner_suggests_nothing_when_even_the_minimum_would_expire_unused() -> None:
    # 0.01/day x 365 = 3.65 can be used before expiry; the $5 minimum cannot.
    plan = rules.plan_topup(average_daily=D("0.01"), safety_factor=D("1.5"), terms=OPENAI_TERMS)
    assert (plan.amount, plan.reason, plan.usable_before_expiry) == (None, "would_expire", D("3.65"))
    # Enough credit already to outlast expiry: nothing to buy.
    full = rules.plan_topup(
        average_daily=D("1"), safety_factor=D("1.5"), terms=OPENAI_TERMS, balance=D("400")
    )
    assert (full.amount, full.reason, full.usable_before_expiry) == (None, "would_expire", D("0.00"))


def test_planner_without_spend_suggests_nothing() -> None:
    plan = rules.plan_topup(average_daily=D("0"), safety_factor=D("1.5"), terms=OPENAI_TERMS)
    assert (plan.amount, plan.reason) == (None, "no_spend")


# --- Auto-recharge projection over the next 30 days ---------------------------------------------------


def test_projection_caps_this_month_by_what_was_already_recharged_and_resets_on_the_first() -> None:
    p = rules.auto_recharge_projection(
        opening_balance=D("20"),
        threshold=D("10"),
        amount=D("25"),
        monthly_limit=D("60"),
        daily_spend=D("8"),
        today=date(2026, 11, 20),
        already_recharged=D("40"),
    )
    # Nov 21: 12. Nov 22: 4 -> only 20 of the 60 left -> 24. Nov 23: 16. Nov 24: 8 -> limit reached.
    # Nov 25: 0. Nov 26-30 refused (40). Dec 1 00:00: limit resets, 0 -> +25. Dec 1: 17. Dec 2: 9 -> +25 = 34.
    # Dec 3-5: 26, 18, 10 (not below). Dec 6: 2 -> +10 (the remainder of 60) = 12. Dec 7: 4. Dec 8: 0 (4
    # refused). Dec 9-20: 12 x 8 refused.
    assert [(r.at.date(), r.added) for r in p.recharges] == [
        (date(2026, 11, 22), D("20")),
        (date(2026, 12, 1), D("25")),
        (date(2026, 12, 2), D("25")),
        (date(2026, 12, 6), D("10")),
    ]
    assert [r.requested for r in p.recharges] == [D("25")] * 4
    assert p.cash_out == {date(2026, 11, 1): D("20"), date(2026, 12, 1): D("60")}
    assert p.limit_reached == {date(2026, 11, 1): True, date(2026, 12, 1): True}
    assert p.refused_spend == D("140")
    assert p.first_refused_on == date(2026, 11, 26)
    assert p.closing_balance == D("0")


def test_projection_with_no_limit_keeps_recharging_and_never_refuses() -> None:
    p = rules.auto_recharge_projection(
        opening_balance=D("50"),
        threshold=D("10"),
        amount=D("30"),
        monthly_limit=None,
        daily_spend=D("10"),
        today=date(2026, 11, 20),
        days=30,
    )
    # 300 spent over 30 days from 50: a recharge every 3 days once under 10 -> 9 recharges of 30.
    assert len(p.recharges) == 9
    assert sum(p.cash_out.values()) == D("270")
    assert p.closing_balance == D("20")
    assert (p.refused_spend, p.first_refused_on) == (D("0"), None)
    assert p.limit_reached == {date(2026, 11, 1): False, date(2026, 12, 1): False}


def test_projection_once_the_limit_is_reached_adds_nothing_more_this_month() -> None:
    p = rules.auto_recharge_projection(
        opening_balance=D("5"),
        threshold=D("10"),
        amount=D("20"),
        monthly_limit=D("50"),
        daily_spend=D("1"),
        today=date(2026, 11, 25),
        days=5,
        already_recharged=D("50"),
    )
    assert p.recharges == []
    assert p.cash_out == {date(2026, 11, 1): D("0")}
    assert p.closing_balance == D("0")
    assert p.refused_spend == D("0")  # 5 days x 1 from 5 just reaches zero
