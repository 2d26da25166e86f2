"""Analytics selectors: every figure equals an independent sum over raw UsageRecords, exactly."""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from tests import factories
from tests.usage.analytics_data import UsageData
from usage.models import ModelPrice, UsageRecord
from usage.selectors import (
    UsageFilter,
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
    spend_by_project,
    tokens_by_period,
    unit_cost_by_period,
)
from usage.services import usage_rows_upsert

pytestmark = pytest.mark.django_db
NY = zoneinfo.ZoneInfo("America/New_York")
RANGE = UsageFilter(start=date(2026, 10, 1), end=date(2026, 11, 20))


def records(data: UsageData) -> list[UsageRecord]:
    return list(UsageRecord.objects.filter(organization=data.t.org).select_related("api_key", "project"))


def local(record: UsageRecord) -> date:
    return record.occurred_at.astimezone(NY).date()


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def test_weekly_spend_by_model_equals_raw_records_per_local_week(usage_data: UsageData) -> None:
    rows = spend_by_period(
        organization=usage_data.t.org, flt=RANGE, currency="USD", granularity="week", group_by="model"
    )
    expected: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
    for r in records(usage_data):
        expected[(monday(local(r)), r.model)] += r.cost
    assert {(row.day, row.label): row.cost for row in rows} == dict(expected)


def test_monthly_spend_by_project_splits_at_the_local_month_boundary(usage_data: UsageData) -> None:
    rows = spend_by_period(
        organization=usage_data.t.org, flt=RANGE, currency="USD", granularity="month", group_by="project"
    )
    expected: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
    for r in records(usage_data):
        expected[(local(r).replace(day=1), r.project.name if r.project else "Unassigned")] += r.cost
    assert {(row.day, row.label): row.cost for row in rows} == dict(expected)
    assert {row.day for row in rows} == {date(2026, 10, 1), date(2026, 11, 1)}


def test_a_row_at_utc_midnight_on_the_first_counts_for_the_previous_local_month(tenancy: object) -> None:
    org = factories.make_org("Edge", timezone="America/New_York")
    # 2026-11-01 03:30 UTC is Oct 31 23:30 EDT; 2026-11-02 04:30 UTC is Nov 1 23:30 EST (after the DST change).
    usage_rows_upsert(
        organization=org,
        rows=[
            factories.usage_row(datetime(2026, 11, 1, 3, 30, tzinfo=UTC), cost="1.5"),
            factories.usage_row(datetime(2026, 11, 2, 4, 30, tzinfo=UTC), cost="2.25"),
        ],
    )
    flt = UsageFilter(start=date(2026, 10, 1), end=date(2026, 11, 30))
    monthly = spend_by_period(organization=org, flt=flt, currency="USD", granularity="month", group_by=None)
    assert [(r.day, r.cost) for r in monthly] == [
        (date(2026, 10, 1), Decimal("1.5")),
        (date(2026, 11, 1), Decimal("2.25")),
    ]
    daily = spend_by_period(organization=org, flt=flt, currency="USD", granularity="day", group_by=None)
    assert [r.day for r in daily] == [date(2026, 10, 31), date(2026, 11, 1)]


def test_token_periods_equal_raw_token_sums(usage_data: UsageData) -> None:
    periods = tokens_by_period(organization=usage_data.t.org, flt=RANGE, granularity="day")
    expected: dict[date, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0])
    for r in records(usage_data):
        acc = expected[local(r)]
        for i, value in enumerate(
            (
                r.input_tokens,
                r.cache_read_tokens,
                r.cache_write_tokens,
                r.output_tokens,
                r.reasoning_tokens,
                r.requests,
            )
        ):
            acc[i] += value
    assert {
        p.period: [
            p.input_tokens,
            p.cache_read_tokens,
            p.cache_write_tokens,
            p.output_tokens,
            p.reasoning_tokens,
            p.requests,
        ]
        for p in periods
    } == dict(expected)
    first = periods[0]
    assert (
        first.uncached_input_tokens == first.input_tokens - first.cache_read_tokens - first.cache_write_tokens
    )


def test_cache_savings_use_the_price_in_effect_each_day(usage_data: UsageData) -> None:
    prices = list(ModelPrice.objects.filter(model="gpt-4o").order_by("effective_from"))
    expected = Decimal(0)
    for r in records(usage_data):
        if r.cache_read_tokens and r.model == "gpt-4o":
            price = [p for p in prices if p.effective_from <= local(r)][-1]
            expected += (
                r.cache_read_tokens * (price.input_per_1m - price.cache_read_per_1m) / Decimal(1_000_000)
            )
    [saving] = cache_savings(organization=usage_data.t.org, flt=RANGE)
    assert saving.currency == "USD"
    assert saving.saved == expected > 0
    assert saving.unpriced_tokens == 0


def test_model_distribution_shares_equal_raw_shares(usage_data: UsageData) -> None:
    shares = {
        s.model: s for s in model_distribution(organization=usage_data.t.org, flt=RANGE, currency="USD")
    }
    cost: dict[str, Decimal] = defaultdict(Decimal)
    reqs: dict[str, int] = defaultdict(int)
    toks: dict[str, int] = defaultdict(int)
    for r in records(usage_data):
        cost[r.model] += r.cost
        reqs[r.model] += r.requests
        toks[r.model] += r.input_tokens + r.output_tokens
    total_cost = sum(cost.values(), Decimal(0))
    for model, share in shares.items():
        assert share.cost == cost[model]
        assert share.spend_share == cost[model] / total_cost * 100
        assert share.request_share == Decimal(reqs[model]) / Decimal(sum(reqs.values())) * 100
        assert share.cost_per_1m_tokens == cost[model] / Decimal(toks[model]) * 1_000_000
    assert set(shares) == set(cost)


def test_weekly_unit_costs_equal_raw_ratios_and_mark_rises_over_20_percent(usage_data: UsageData) -> None:
    points = unit_cost_by_period(
        organization=usage_data.t.org, flt=RANGE, currency="USD", granularity="week", group_by="model"
    )
    cost: dict[date, Decimal] = defaultdict(Decimal)
    reqs: dict[date, int] = defaultdict(int)
    for r in records(usage_data):
        cost[monday(local(r))] += r.cost
        reqs[monday(local(r))] += r.requests
    overall = {p.period: p for p in points if p.label == "All"}
    assert {week: p.per_request for week, p in overall.items()} == {w: cost[w] / reqs[w] for w in cost}
    for week, point in overall.items():
        previous = week - timedelta(days=7)
        rose = previous in cost and cost[week] / reqs[week] > cost[previous] / reqs[previous] * Decimal("1.2")
        assert point.per_request_jump == rose
    assert {p.label for p in points} == {"All", "gpt-4o", "claude-sonnet", "gpt-4o-mini"}


def test_a_unit_cost_jump_is_flagged_only_against_the_adjacent_week(tenancy: object) -> None:
    org = factories.make_org("Jumps")
    rows = [
        factories.usage_row(
            datetime(2026, 11, 2, 12, tzinfo=UTC), cost="1.00", requests=10
        ),  # wk Nov 2: 0.10
        factories.usage_row(
            datetime(2026, 11, 9, 12, tzinfo=UTC), cost="1.20", requests=10
        ),  # +20 %: not > 20 %
        factories.usage_row(
            datetime(2026, 11, 16, 12, tzinfo=UTC), cost="1.45", requests=10
        ),  # +20.8 %: flagged
        factories.usage_row(
            datetime(2026, 11, 30, 12, tzinfo=UTC), cost="9.00", requests=10
        ),  # after a gap: no
    ]
    usage_rows_upsert(organization=org, rows=rows)
    flt = UsageFilter(start=date(2026, 11, 1), end=date(2026, 12, 6))
    points = unit_cost_by_period(organization=org, flt=flt, currency="USD", granularity="week")
    assert [(p.period, p.per_request_jump) for p in points] == [
        (date(2026, 11, 2), False),
        (date(2026, 11, 9), False),
        (date(2026, 11, 16), True),
        (date(2026, 11, 30), False),
    ]


def test_peak_hours_bucket_into_local_weekday_and_hour_across_the_dst_change(usage_data: UsageData) -> None:
    cells = {
        (c.weekday, c.hour): c for c in peak_hours(organization=usage_data.t.org, flt=RANGE, currency="USD")
    }
    expected_requests: dict[tuple[int, int], int] = defaultdict(int)
    expected_cost: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    for r in records(usage_data):
        moment = r.occurred_at.astimezone(NY)
        if RANGE.start <= moment.date() <= RANGE.end:
            expected_requests[(moment.isoweekday(), moment.hour)] += r.requests
            expected_cost[(moment.isoweekday(), moment.hour)] += r.cost
    assert {k: c.requests for k, c in cells.items()} == dict(expected_requests)
    assert {k: c.cost for k, c in cells.items()} == dict(expected_cost)


def test_errors_by_period_and_by_key_equal_raw_failures(usage_data: UsageData) -> None:
    counts = errors_by_period(organization=usage_data.t.org, flt=RANGE, granularity="day")
    expected: dict[tuple[date, str], int] = defaultdict(int)
    by_key: dict[tuple[str, str, str], int] = defaultdict(int)
    for r in records(usage_data):
        if r.status == "error":
            expected[(local(r), r.error_code)] += r.requests
            by_key[(r.api_key.name if r.api_key else "No key", r.model, r.error_code)] += r.requests
    assert {(c.period, c.error_code): c.requests for c in counts} == dict(expected)
    breakdown = errors_by_key_and_model(organization=usage_data.t.org, flt=RANGE)
    assert {(b.key_name, b.model, b.error_code): b.errors for b in breakdown} == dict(by_key)


def test_a_retry_storm_is_a_key_day_with_50_failures_and_30_percent_share(usage_data: UsageData) -> None:
    storms = retry_storms(organization=usage_data.t.org, flt=RANGE)
    assert [(s.day, s.key_name, s.errors, s.requests) for s in storms] == [
        (date(2026, 11, 10), usage_data.loose_key.name, 60, 80)
    ]
    assert storms[0].error_share == Decimal(75)
    assert retry_storms(organization=usage_data.t.org, flt=RANGE, min_errors=61) == []
    assert retry_storms(organization=usage_data.t.org, flt=RANGE, min_share=Decimal("0.76")) == []


def test_spend_by_key_equals_raw_and_flags_unassigned_keys(usage_data: UsageData) -> None:
    keys = {k.name: k for k in spend_by_key(organization=usage_data.t.org, flt=RANGE, currency="USD")}
    cost: dict[str, Decimal] = defaultdict(Decimal)
    for r in records(usage_data):
        cost[r.api_key.name] += r.cost
    assert {name: k.cost for name, k in keys.items()} == dict(cost)
    assert [k.name for k in keys.values() if k.unassigned] == [usage_data.loose_key.name]
    assert keys[usage_data.chat_key.name].last_used_at == usage_data.chat_key.last_used_at


def test_a_key_idle_for_14_days_that_spends_again_is_reported(usage_data: UsageData) -> None:
    flt = UsageFilter(start=date(2026, 10, 22), end=date(2026, 11, 20))
    sleepy, loose = keys_woken_after_idle(organization=usage_data.t.org, flt=flt, currency="USD")
    assert (sleepy.name, sleepy.woke_on, sleepy.cost_since) == (
        usage_data.sleepy_key.name,
        date(2026, 11, 18),
        Decimal("4.25"),
    )
    assert sleepy.idle_days == (date(2026, 11, 18) - date(2026, 10, 1)).days - 1
    # Never used since its creation on Jan 1, then 80 calls on Nov 10: idle since creation.
    assert (loose.name, loose.woke_on, loose.cost_since, loose.requests_since) == (
        usage_data.loose_key.name,
        date(2026, 11, 10),
        Decimal("0.8"),
        80,
    )
    woken = keys_woken_after_idle(organization=usage_data.t.org, flt=flt, currency="USD", idle_days=48)
    assert [w.name for w in woken] == [usage_data.loose_key.name]


def test_spend_by_project_tells_no_data_from_zero(usage_data: UsageData) -> None:
    quiet = factories.make_project(usage_data.t.org, "Quiet", slug="quiet")
    rows = {p.name: p for p in spend_by_project(organization=usage_data.t.org, flt=RANGE, currency="USD")}
    assert rows[quiet.name].cost is None
    cost: dict[str, Decimal] = defaultdict(Decimal)
    for r in records(usage_data):
        cost[r.project.name if r.project else "Unassigned"] += r.cost
    assert {name: p.cost for name, p in rows.items() if p.cost is not None} == dict(cost)


def test_the_request_log_is_newest_first_within_local_days(usage_data: UsageData) -> None:
    day = date(2026, 11, 2)  # the first local day after the DST change
    flt = UsageFilter(start=day, end=day)
    log = list(request_log(organization=usage_data.t.org, flt=flt))
    assert log and all(local(r) == day for r in log)
    assert [r.occurred_at for r in log] == sorted((r.occurred_at for r in log), reverse=True)
    assert len(log) == sum(1 for r in records(usage_data) if local(r) == day)


def test_period_axis_covers_partial_first_and_last_periods() -> None:
    assert period_axis(date(2026, 10, 28), date(2026, 11, 3), "week") == [
        date(2026, 10, 26),
        date(2026, 11, 2),
    ]
    assert period_axis(date(2026, 10, 31), date(2026, 12, 1), "month") == [
        date(2026, 10, 1),
        date(2026, 11, 1),
        date(2026, 12, 1),
    ]
