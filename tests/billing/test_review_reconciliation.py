"""Balance reconciliation: opening + top-ups credited - spend = expected closing, against the provider's reading."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.test import override_settings

from billing.models import BalanceSnapshot, TopUp, TopUpStatus
from billing.review import balance_reconciliation, month_window, reconciliation_tolerance
from projects.models import ProviderAccount
from tests import factories
from tests.conftest import Tenancy
from usage.models import StreamState
from usage.services import usage_rows_upsert

# November 2026 in New York runs from 2026-11-01 04:00 UTC (EDT) to 2026-12-01 05:00 UTC (EST).
START = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)
END = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)


def snap(account: ProviderAccount, at: datetime, remaining: str) -> None:
    BalanceSnapshot.objects.create(provider_account=account, taken_at=at, remaining=Decimal(remaining))


def topup(
    account: ProviderAccount,
    amount: str,
    *,
    credited: datetime | None,
    status: str = TopUpStatus.CREDITED,
    bonus: str = "0",
    ref: str = "",
) -> None:
    TopUp.objects.create(
        provider_account=account,
        amount=Decimal(amount),
        bonus=Decimal(bonus),
        status=status,
        created_at=credited or datetime(2026, 11, 20, tzinfo=UTC),
        credited_at=credited,
        order_ref=ref,
    )


def spend(t: Tenancy, account: ProviderAccount, *costs: str) -> None:
    rows = [factories.usage_row(datetime(2026, 11, 15, 12, tzinfo=UTC), cost=c) for c in costs]
    usage_rows_upsert(organization=t.org, rows=rows, account=account)


@pytest.fixture
def ny(tenancy: Tenancy) -> Tenancy:
    tenancy.org.timezone = "America/New_York"
    tenancy.org.save()
    tenancy.org.refresh_from_db()
    return tenancy


@pytest.mark.django_db
def test_readings_at_the_month_boundaries_reconcile_exactly(ny: Tenancy) -> None:
    account = factories.make_account(ny.org, "newapi", name="Reseller")
    snap(account, datetime(2026, 10, 20, tzinfo=UTC), "150.00")  # older, not the opening
    snap(account, START, "100.00")  # at the month start counts as opening
    snap(account, END, "134.876544")  # at the month end counts as closing
    snap(account, datetime(2026, 12, 1, 6, tzinfo=UTC), "1.00")  # after the month
    topup(account, "50.00", bonus="5.00", credited=datetime(2026, 11, 10, tzinfo=UTC), ref="A1")
    topup(account, "999", credited=datetime(2026, 12, 2, tzinfo=UTC), ref="later")
    topup(account, "777", credited=None, status=TopUpStatus.FAILED, ref="failed")
    spend(ny, account, "20.000000", "0.123456")

    window = month_window(organization=ny.org, month=date(2026, 11, 1), today=date(2026, 12, 10))
    [rec] = balance_reconciliation(organization=ny.org, window=window)
    assert rec.opening is not None and rec.opening.remaining == Decimal("100.00")
    assert rec.topups == Decimal("55.00") and rec.topup_count == 1
    assert rec.spend == Decimal("20.123456")
    assert rec.expected == Decimal("100.00") + Decimal("55.00") - Decimal("20.123456")
    assert rec.difference == Decimal(0)
    assert rec.reconciles and not rec.flagged and rec.cause == ""


@pytest.mark.django_db
def test_a_higher_provider_balance_with_a_pending_top_up_is_an_unsynced_top_up(ny: Tenancy) -> None:
    account = factories.make_account(ny.org, "newapi")
    snap(account, START, "10.00")
    snap(account, END, "18.00")
    topup(account, "10.00", credited=None, status=TopUpStatus.PENDING, ref="ORD-42")
    spend(ny, account, "2.00")
    window = month_window(organization=ny.org, month=date(2026, 11, 1), today=date(2026, 12, 10))
    [rec] = balance_reconciliation(organization=ny.org, window=window)
    assert rec.difference == Decimal("10.00")
    assert rec.flagged
    assert "Unsynced top-up" in rec.cause and "ORD-42" in rec.cause


@pytest.mark.django_db
def test_a_lower_provider_balance_while_usage_lags_is_in_flight_rows(ny: Tenancy) -> None:
    account = factories.make_account(ny.org, "newapi")
    StreamState.objects.create(
        provider_account=account, stream="usage", cursor_at=datetime(2026, 11, 29, tzinfo=UTC)
    )
    snap(account, START, "10.00")
    snap(account, END, "4.00")
    spend(ny, account, "3.00")
    window = month_window(organization=ny.org, month=date(2026, 11, 1), today=date(2026, 12, 10))
    [rec] = balance_reconciliation(organization=ny.org, window=window)
    assert rec.difference == Decimal("-3.00")
    assert rec.flagged and "In-flight rows" in rec.cause


@pytest.mark.django_db
def test_an_account_without_readings_says_so(ny: Tenancy) -> None:
    factories.make_account(ny.org, "openai")
    window = month_window(organization=ny.org, month=date(2026, 11, 1), today=date(2026, 12, 10))
    [rec] = balance_reconciliation(organization=ny.org, window=window)
    assert rec.expected is None and rec.difference is None and not rec.flagged
    assert rec.cause == "No balance reading at or before the month start."


def test_tolerance_is_the_larger_of_one_cent_and_half_a_percent_of_spend() -> None:
    assert reconciliation_tolerance(Decimal("1.00")) == Decimal("0.01")
    assert reconciliation_tolerance(Decimal("10.00")) == Decimal("0.05")
    with override_settings(QB_RECONCILE_TOLERANCE_AMOUNT="1", QB_RECONCILE_TOLERANCE_PERCENT="0"):
        assert reconciliation_tolerance(Decimal("1000")) == Decimal("1")
