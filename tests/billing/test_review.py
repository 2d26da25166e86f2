"""Month review page and its reads: figures equal raw sums in the org's zone (across DST), empty state, tenancy."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.models import Budget
from billing.review import (
    balance_reconciliation,
    month_digest,
    month_review,
    month_window,
    parse_month,
    spend_breakdown,
)
from tests import factories
from tests.conftest import Tenancy, client_for
from usage.models import RecordStatus, UsageRecord
from usage.services import usage_rows_upsert

NY = zoneinfo.ZoneInfo("America/New_York")
# December 10th in New York: November 2026 (with the DST change on Sunday November 1st) is last month.
NOW = datetime(2026, 12, 10, 15, 0, tzinfo=UTC)


def _raw_month(org_pk: int, year: int, month: int, **filters: object) -> list[UsageRecord]:
    """Raw records whose local (New York) time falls in the month: an independent oracle, no rollups."""
    records = UsageRecord.objects.filter(organization_id=org_pk, **filters)
    return [
        r
        for r in records
        if (r.occurred_at.astimezone(NY).year, r.occurred_at.astimezone(NY).month) == (year, month)
    ]


def _seed_dst_months(t: Tenancy) -> None:
    org = t.org
    org.timezone = "America/New_York"
    org.save()
    account = factories.make_account(org, "newapi", name="Reseller")
    chat = factories.make_key(org, project=t.project, account=account, name="chat")
    batch = factories.make_key(org, project=t.other_project, account=account, name="batch")
    loose = factories.make_key(org, account=account, name="loose")
    u = factories.usage_row
    rows = [
        # October: 23:59 EDT on Oct 31 is 03:59 UTC on Nov 1; it stays in October.
        u(
            datetime(2026, 10, 5, 12, tzinfo=UTC),
            cost="3.30",
            key=chat.external_id,
            input_tokens=1000,
            output_tokens=100,
            cache_read_tokens=500,
        ),
        u(
            datetime(2026, 11, 1, 3, 59, 59, tzinfo=UTC),
            cost="1.0000000001",
            key=batch.external_id,
            input_tokens=10,
            output_tokens=5,
        ),
        # November: midnight EDT, both 01:30s of the repeated hour, and 23:59 EST on Nov 30.
        u(
            datetime(2026, 11, 1, 4, 0, tzinfo=UTC),
            cost="2.25",
            key=chat.external_id,
            input_tokens=2000,
            output_tokens=400,
            cache_read_tokens=200,
        ),
        u(
            datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
            cost="0.75",
            key=chat.external_id,
            model="claude-sonnet-4-5",
            input_tokens=800,
            output_tokens=300,
        ),
        u(
            datetime(2026, 11, 1, 6, 30, tzinfo=UTC),
            cost="0.0000000003",
            key=loose.external_id,
            input_tokens=1,
            output_tokens=1,
        ),
        u(
            datetime(2026, 11, 17, 18, 0, tzinfo=UTC),
            cost="4.10",
            key=batch.external_id,
            input_tokens=3000,
            output_tokens=900,
            status=RecordStatus.ERROR,
            error_code="500",
        ),
        u(
            datetime(2026, 12, 1, 4, 59, 59, tzinfo=UTC),
            cost="5.05",
            key=batch.external_id,
            model="claude-sonnet-4-5",
            input_tokens=700,
            output_tokens=70,
        ),
        # December: 00:00 EST on Dec 1.
        u(
            datetime(2026, 12, 1, 5, 0, tzinfo=UTC),
            cost="9.99",
            key=chat.external_id,
            input_tokens=5,
            output_tokens=5,
        ),
    ]
    usage_rows_upsert(organization=org, rows=rows, account=account)
    Budget.objects.create(organization=org, project=t.project, monthly_amount=Decimal("2.50"))


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_review_figures_equal_raw_sums_in_new_york_across_the_dst_change(tenancy: Tenancy) -> None:
    _seed_dst_months(tenancy)
    org = tenancy.org
    org.refresh_from_db()
    review = month_review(organization=org, month=date(2026, 11, 1), today=date(2026, 12, 10))

    november = _raw_month(org.pk, 2026, 11)
    october = _raw_month(org.pk, 2026, 10)
    nov_cost = sum((r.cost for r in november), Decimal(0))
    oct_cost = sum((r.cost for r in october), Decimal(0))
    assert len(november) == 5 and len(october) == 2
    [usd] = review.totals
    assert usd.cost == nov_cost
    assert usd.previous_cost == oct_cost
    assert usd.change == nov_cost - oct_cost
    assert usd.requests == sum(r.requests for r in november)

    by_project = {(row.label): row for row in review.breakdown.projects}
    for project in (tenancy.project, tenancy.other_project):
        expected = sum((r.cost for r in november if r.project_id == project.pk), Decimal(0))
        assert by_project[project.name].actual == expected
    assert by_project["Unassigned"].actual == sum(
        (r.cost for r in november if r.project_id is None), Decimal(0)
    )
    chat_row = by_project[tenancy.project.name]
    assert chat_row.budget is not None
    assert chat_row.budget.variance.amount == chat_row.actual - Decimal("2.50")
    assert chat_row.forecast is None  # a closed month has no forecast

    by_model = {row.label: row for row in review.breakdown.models}
    for model in {r.model for r in november}:
        assert by_model[model].actual == sum((r.cost for r in november if r.model == model), Decimal(0))

    tokens = sum(r.input_tokens + r.output_tokens for r in november)
    assert review.unit_cost.current is not None
    assert review.unit_cost.current.per_request == nov_cost / sum(r.requests for r in november)
    assert review.unit_cost.current.per_1m_tokens == nov_cost / tokens * 1_000_000
    assert review.tokens.current is not None
    assert review.tokens.current.cache_read_tokens == sum(r.cache_read_tokens for r in november)
    assert review.tokens.current.input_output_ratio == Decimal(sum(r.input_tokens for r in november)) / sum(
        r.output_tokens for r in november
    )
    [failed] = review.failed
    assert failed.cost == sum((r.cost for r in november if r.status == RecordStatus.ERROR), Decimal(0))
    assert sum((d.cost for d in review.peaks.days), Decimal(0)) <= nov_cost
    assert review.peaks.days[0].cost == Decimal("5.05")  # Nov 30 local, though it is Dec 1 in UTC


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_review_page_defaults_to_last_month_and_shows_the_figures(tenancy: Tenancy) -> None:
    _seed_dst_months(tenancy)
    response = client_for(tenancy.finance).get(f"/o/{tenancy.org.slug}/review/")
    assert response.status_code == 200
    assert response.context["month"] == date(2026, 11, 1)
    html = response.content.decode()
    assert "Month review · November 2026" in html
    assert "Close November 2026" in html
    assert 'aria-current="page">Month review' in html


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_empty_month_shows_no_data_states(tenancy: Tenancy) -> None:
    response = client_for(tenancy.viewer).get(f"/o/{tenancy.org.slug}/review/2026-11/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "No data" in html
    assert "No usage in November 2026." in html
    assert "No provider accounts to reconcile." in html
    assert "Close November" not in html  # viewers cannot close


@pytest.mark.django_db
@pytest.mark.parametrize("month", ["2026-13", "2026-00", "1999-12"])
def test_a_month_that_does_not_exist_is_404(tenancy: Tenancy, month: str) -> None:
    assert client_for(tenancy.finance).get(f"/o/{tenancy.org.slug}/review/{month}/").status_code == 404


@pytest.mark.django_db
def test_outsiders_get_404_on_the_review_and_its_exports(tenancy: Tenancy) -> None:
    client = client_for(tenancy.outsider)
    slug = tenancy.org.slug
    for url in (
        f"/o/{slug}/review/",
        f"/o/{slug}/review/2026-10/",
        f"/o/{slug}/review/2026-10/usage.csv",
        f"/o/{slug}/review/2026-10/focus.csv",
    ):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/o/{slug}/review/2026-10/close/").status_code == 404


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_review_page_query_count_does_not_grow_with_data(
    tenancy: Tenancy, django_assert_max_num_queries: object
) -> None:
    _seed_dst_months(tenancy)
    client = client_for(tenancy.finance)
    url = f"/o/{tenancy.org.slug}/review/2026-11/"
    with CaptureQueriesContext(connection) as small:
        assert client.get(url).status_code == 200
    for n in range(3):
        account = factories.make_account(tenancy.org, "deepseek", name=f"Extra {n}")
        project = factories.make_project(tenancy.org, f"Extra project {n}")
        key = factories.make_key(tenancy.org, project=project, account=account, name=f"extra{n}")
        Budget.objects.create(organization=tenancy.org, project=project, monthly_amount=Decimal("1.00"))
        usage_rows_upsert(
            organization=tenancy.org,
            rows=[
                factories.usage_row(
                    datetime(2026, 11, 10 + n, 12, tzinfo=UTC),
                    cost="1.00",
                    key=key.external_id,
                    model=f"m{n}",
                )
            ],
            account=account,
        )
    with CaptureQueriesContext(connection) as large:
        assert client.get(url).status_code == 200
    assert len(large.captured_queries) == len(small.captured_queries)
    # The month-over-month figures, a past month's project x model grid and the accounts' spend come
    # from one rollup digest; peak days from the charted daily spend (was 25 queries in all).
    assert len(small.captured_queries) == 16
    # The open month also reads the day grid its forecast needs.
    with CaptureQueriesContext(connection) as current:
        assert client.get(f"/o/{tenancy.org.slug}/review/2026-12/").status_code == 200
    assert len(current.captured_queries) == 17
    with django_assert_max_num_queries(30):  # type: ignore[operator]
        client.get(url)


def test_parse_month_accepts_only_real_months() -> None:
    assert parse_month("2026-10") == date(2026, 10, 1)
    assert parse_month("2026-1") is None
    assert parse_month("2026-13") is None
    assert parse_month("x") is None


@pytest.mark.django_db
def test_a_past_months_breakdown_and_account_spend_from_the_digest_equal_the_day_reads(
    tenancy: Tenancy,
) -> None:
    """The digest's month grid and account spend replace two day-level reads for a past month:
    every figure they feed must be what the day-level reads give, budgets and variances included."""
    _seed_dst_months(tenancy)
    org = tenancy.org
    Budget.objects.create(organization=org, project=tenancy.project, monthly_amount=Decimal("4.00"))
    Budget.objects.create(organization=org, model="claude-sonnet-4-5", monthly_amount=Decimal("0.50"))
    Budget.objects.create(organization=org, monthly_amount=Decimal("10.00"))
    window = month_window(organization=org, month=date(2026, 11, 1), today=date(2026, 12, 10))
    digest = month_digest(organization=org, window=window)

    from_digest = spend_breakdown(organization=org, window=window, grid=digest.month_grid())
    from_days = spend_breakdown(organization=org, window=window)
    assert from_digest == from_days
    assert [(r.label, r.actual, r.previous) for r in from_days.projects] != []
    assert {v.variance for v in from_digest.organization_budgets} == {
        v.variance for v in from_days.organization_budgets
    }

    recon_digest = balance_reconciliation(
        organization=org, window=window, account_spend=digest.account_spend()
    )
    recon_days = balance_reconciliation(organization=org, window=window)
    assert [r.spend for r in recon_digest] == [r.spend for r in recon_days] != []
    assert recon_days[0].spend == sum(
        (
            r.cost
            for r in UsageRecord.objects.filter(organization=org)
            if r.occurred_at.astimezone(org.zoneinfo).month == 11
        ),
        Decimal(0),
    )
