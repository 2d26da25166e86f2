"""Cost drivers: the pure month-over-month rule that names why a (key, model) pair cost more."""

from __future__ import annotations

from decimal import Decimal

from billing.review import DriverStats, cost_drivers


def stats(key: str, model: str, cost: str, requests: int, inp: int = 1000, cache: int = 0) -> DriverStats:
    return DriverStats(key, key.upper() if key else "No key", model, Decimal(cost), requests, inp, cache)


def test_a_key_without_requests_last_month_is_a_new_key() -> None:
    [driver] = cost_drivers(
        [stats("k1", "gpt-4o", "5", 10), stats("k2", "gpt-4o", "7.5", 10)],
        [stats("k1", "gpt-4o", "5", 10)],
        currency="USD",
    )
    assert (driver.key_name, driver.reason, driver.delta) == ("K2", "new_key", Decimal("7.5"))
    assert "New key K2" in driver.explanation and "$7.50" in driver.explanation


def test_a_model_taking_a_bigger_share_of_requests_is_a_model_mix_shift() -> None:
    previous = [stats("k1", "gpt-4o-mini", "1", 100)]
    current = [stats("k1", "gpt-4o-mini", "1", 50), stats("k1", "gpt-4o", "9", 50)]
    [driver] = cost_drivers(current, previous, currency="USD")
    assert (driver.model, driver.reason, driver.delta) == ("gpt-4o", "model_mix", Decimal("9"))
    assert "0.0% to 50.0%" in driver.explanation


def test_a_falling_cache_hit_rate_is_a_cache_hit_drop() -> None:
    previous = [stats("k1", "claude", "10", 100, inp=1000, cache=600)]
    current = [stats("k1", "claude", "14", 100, inp=1000, cache=200)]
    [driver] = cost_drivers(current, previous, currency="USD")
    assert driver.reason == "cache_drop"
    assert "60.0% → 20.0%" in driver.explanation


def test_more_requests_at_a_steady_mix_is_volume_growth() -> None:
    [driver] = cost_drivers([stats("k1", "m", "15", 150)], [stats("k1", "m", "10", 100)], currency="USD")
    assert driver.reason == "volume"
    assert "100 → 150 requests" in driver.explanation


def test_same_requests_costing_more_is_a_unit_cost_rise() -> None:
    [driver] = cost_drivers([stats("k1", "m", "12", 100)], [stats("k1", "m", "10", 100)], currency="USD")
    assert driver.reason == "unit_cost"
    assert "$0.1000 → $0.1200 per request" in driver.explanation


def test_bucketed_reports_without_request_counts_explain_by_tokens() -> None:
    [grew] = cost_drivers(
        [stats("k1", "claude", "15", 0, inp=3_000_000)],
        [stats("k1", "claude", "10", 0, inp=2_000_000)],
        currency="USD",
    )
    assert grew.reason == "volume"
    assert "2,000,000 → 3,000,000 input tokens" in grew.explanation
    [dearer] = cost_drivers(
        [stats("k1", "claude", "12", 0, inp=2_000_000)],
        [stats("k1", "claude", "10", 0, inp=2_000_000)],
        currency="USD",
    )
    assert dearer.reason == "unit_cost"
    assert "$5.00 → $6.00 per 1M input tokens" in dearer.explanation


def test_only_growth_is_listed_largest_first_and_limited() -> None:
    previous = [stats("k1", f"m{i}", "10", 10) for i in range(8)]
    current = [stats("k1", f"m{i}", str(10 + i), 10) for i in range(8)]  # m0 unchanged
    drivers = cost_drivers(current, previous, currency="USD", limit=3)
    assert [d.model for d in drivers] == ["m7", "m6", "m5"]
    assert [d.delta for d in drivers] == [Decimal(7), Decimal(6), Decimal(5)]
    assert cost_drivers([stats("k1", "m", "1", 10)], [stats("k1", "m", "2", 10)], currency="USD") == []
