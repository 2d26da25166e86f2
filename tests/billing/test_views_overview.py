from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from billing.models import BalanceSnapshot, Budget, TopUp, TopUpStatus
from tests import factories
from tests.conftest import Tenancy, client_for
from usage.models import UsageRecord
from usage.services import usage_rows_upsert

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


@pytest.mark.django_db
def test_empty_organization_shows_no_data_states(tenancy: Tenancy) -> None:
    response = client_for(tenancy.viewer).get(f"/o/{tenancy.org.slug}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "No usage in the last 30 days." in html
    assert "No provider accounts yet." in html
    assert "No data" in html


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_overview_totals_equal_raw_sums_in_the_org_timezone(tenancy: Tenancy) -> None:
    org = tenancy.org
    org.timezone = "Asia/Shanghai"  # UTC+8: 2026-10-31 20:00 UTC is already November 1st locally.
    org.save()
    account = factories.make_account(org, "newapi")
    key = factories.make_key(org, project=tenancy.project, account=account, name="chat")
    rows = [
        factories.usage_row(
            datetime(2026, 10, 31, 15, 59, tzinfo=UTC), cost="1.10", key=key.external_id
        ),  # Oct 31 local
        factories.usage_row(
            datetime(2026, 10, 31, 16, 0, tzinfo=UTC), cost="2.20", key=key.external_id
        ),  # Nov 1 local
        factories.usage_row(
            datetime(2026, 11, 19, 3, 0, tzinfo=UTC), cost="0.0000000007", key=key.external_id
        ),
        factories.usage_row(datetime(2026, 11, 19, 3, 0, tzinfo=UTC), cost="5.00", model="claude-haiku-4-5"),
    ]
    usage_rows_upsert(organization=org, rows=rows, account=account)
    Budget.objects.create(organization=org, project=tenancy.project, monthly_amount=Decimal("2.00"))
    BalanceSnapshot.objects.create(
        provider_account=account,
        taken_at=NOW - timedelta(minutes=3),
        raw_quota=24997909,
        remaining=Decimal("49.995818"),
    )

    response = client_for(tenancy.viewer).get(f"/o/{org.slug}/")
    assert response.status_code == 200
    month = response.context["month_totals"]
    november = [
        r
        for r in UsageRecord.objects.filter(organization=org)
        if r.occurred_at >= datetime(2026, 10, 31, 16, tzinfo=UTC)
    ]
    assert month[0].cost == sum((r.cost for r in november), Decimal(0)) == Decimal("7.2000000007")
    budget = response.context["budgets"][0]
    assert budget.actual == Decimal("2.2000000007")
    assert budget.state == "over"
    html = response.content.decode()
    assert "$50.00" in html and "25.0M quota" in html
    assert 'data-figure="fig-spend-30d-data"' in html


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_an_openai_balance_on_the_overview_is_derived_from_top_ups_with_its_runway(tenancy: Tenancy) -> None:
    """OpenAI has no balance API: the overview shows credited − billed, as the balances page does."""
    org = tenancy.org
    openai = factories.make_account(org, "openai", name="OpenAI prod")
    silent = factories.make_account(org, "anthropic", name="Anthropic lab")
    TopUp.objects.create(
        provider_account=openai,
        amount=Decimal("100.00"),
        status=TopUpStatus.CREDITED,
        created_at=NOW - timedelta(days=20),
        credited_at=NOW - timedelta(days=20),
    )
    # $3.25 a day over the last 7 full days (Nov 13-19) and nothing before: 100 − 22.75 = 77.25.
    rows = [
        factories.usage_row(datetime(2026, 11, 13 + n, 12, tzinfo=UTC), cost="3.25", natural_key=f"d{n}")
        for n in range(7)
    ]
    usage_rows_upsert(organization=org, rows=rows, account=openai)

    html = client_for(tenancy.viewer).get(f"/o/{org.slug}/").content.decode()
    balances = html[html.index("<h2>Balances</h2>") : html.index("Budgets, month to date")]
    assert "$77.25" in balances and "derived from top-ups" in balances
    assert "23.8 days" in balances  # 77.25 ÷ 3.25
    # An Anthropic account without any credit entered says so instead of a number.
    assert "no credits entered" in balances and silent.name in balances


@pytest.mark.django_db
def test_overview_query_count_does_not_grow_with_accounts(
    tenancy: Tenancy, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    for _ in range(6):
        account = factories.make_account(tenancy.org)
        BalanceSnapshot.objects.create(provider_account=account, taken_at=NOW, remaining=Decimal("1"))
    client = client_for(tenancy.viewer)
    with django_assert_max_num_queries(16):
        assert client.get(f"/o/{tenancy.org.slug}/").status_code == 200


@pytest.mark.django_db
def test_outsider_gets_404_and_anonymous_goes_to_login(tenancy: Tenancy, client) -> None:  # type: ignore[no-untyped-def]
    assert client_for(tenancy.outsider).get(f"/o/{tenancy.org.slug}/").status_code == 404
    response = client.get(f"/o/{tenancy.org.slug}/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.django_db
def test_home_redirects_to_the_first_organization(tenancy: Tenancy) -> None:
    response = client_for(tenancy.viewer).get("/")
    assert response.status_code == 302 and response["Location"] == f"/o/{tenancy.org.slug}/"
    lonely = factories.make_user("lonely")
    assert "not in an organization" in client_for(lonely).get("/").content.decode()
