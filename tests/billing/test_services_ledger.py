"""Top-up ledger: manual entry, CSV import (line-numbered errors, idempotent), expiry, derived balances."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pytest
import time_machine

from billing.models import BalanceSnapshot, SnapshotSource, TopUp, TopUpSource, TopUpStatus
from billing.selectors import account_runways
from billing.services.ledger import balance_snapshot_record_manual, topup_record, topups_import_csv
from tests import factories
from tests.billing.builders import spend
from tests.conftest import Tenancy

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
TODAY = date(2026, 11, 20)

CSV = """account,amount,currency,bonus,status,order_ref,payment_method,created_at,kind,note
oa,100,USD,10,credited,ord-1,card,2026-10-01,paid,first
oa,abc,USD,,credited,ord-2,card,2026-10-02,,
nope,5,USD,,credited,ord-3,card,2026-10-02,,
oa,20,USD,,pending,ord-4,card,2026-10-03T09:30:00,,
oa,5,USD,,credited,,card,2026-10-04,,
oa,25,USD,,credited,ord-5,card,2026-02-30,,
oa,5,USD,,credited,grant-1,,2026-10-05,grant,promo
oa,7,USD,,settled,ord-6,card,2026-10-05,,
oa,-3,USD,,credited,ord-7,card,2026-10-05,,
"""


@pytest.mark.django_db
def test_csv_import_lands_good_rows_and_reports_bad_ones_by_line(tenancy: Tenancy) -> None:
    account = factories.make_account(tenancy.org, "openai", slug="oa")
    result = topups_import_csv(organization=tenancy.org, stream=io.BytesIO(CSV.encode()))
    assert result.created == 3
    assert result.duplicates == 0
    assert result.errors == [
        (3, "amount 'abc' is not a number"),
        (4, "unknown account 'nope'"),
        (6, "order_ref is missing (it is what makes a re-import add nothing)"),
        (7, "created_at '2026-02-30' is not a date (use YYYY-MM-DD or ISO 8601)"),
        (9, "status 'settled' is not one of pending, credited, failed, refunded"),
        (10, "amount must not be negative"),
    ]
    first = TopUp.objects.get(order_ref="ord-1")
    assert (first.amount, first.bonus, first.status, first.source) == (
        D("100"),
        D("10"),
        TopUpStatus.CREDITED,
        TopUpSource.IMPORT,
    )
    assert first.expires_at == datetime(2027, 10, 1, tzinfo=UTC)  # OpenAI: a year after purchase
    assert TopUp.objects.get(order_ref="grant-1").source == TopUpSource.GRANT
    assert TopUp.objects.get(order_ref="ord-4").credited_at is None  # pending: not credited
    assert account.topups.count() == 3


@pytest.mark.django_db
def test_importing_the_same_file_twice_adds_nothing(tenancy: Tenancy) -> None:
    factories.make_account(tenancy.org, "openai", slug="oa")
    topups_import_csv(organization=tenancy.org, stream=io.BytesIO(CSV.encode()))
    again = topups_import_csv(organization=tenancy.org, stream=io.BytesIO(CSV.encode()))
    assert (again.created, again.duplicates, len(again.errors)) == (0, 3, 6)
    assert TopUp.objects.count() == 3


@pytest.mark.django_db
def test_an_import_missing_required_columns_is_refused_at_the_header(tenancy: Tenancy) -> None:
    result = topups_import_csv(organization=tenancy.org, stream=io.StringIO("account,amount\noa,5\n"))
    assert result.errors == [(1, "missing column(s): order_ref, created_at")]


@pytest.mark.django_db
def test_naive_import_times_are_the_organizations(tenancy: Tenancy) -> None:
    tenancy.org.timezone = "Asia/Shanghai"
    tenancy.org.save()
    factories.make_account(tenancy.org, "deepseek", slug="ds")
    text = "account,amount,order_ref,created_at\nds,10,o-1,2026-10-01T08:00:00\n"
    topups_import_csv(organization=tenancy.org, stream=io.StringIO(text))
    topup = TopUp.objects.get()
    assert topup.created_at == datetime(2026, 10, 1, 0, 0, tzinfo=UTC)
    assert topup.expires_at is None  # only OpenAI credits expire


def _openai_with_credits(t: Tenancy) -> object:
    account = factories.make_account(t.org, "openai", slug="oa", name="OpenAI prod")
    topup_record(
        account=account, amount=D("100"), bonus=D("10"), created_at=datetime(2026, 10, 1, tzinfo=UTC)
    )
    topup_record(
        account=account,
        amount=D("5"),
        is_grant=True,
        created_at=datetime(2026, 10, 5, tzinfo=UTC),
        order_ref="g",
    )
    topup_record(
        account=account,
        amount=D("500"),
        status=TopUpStatus.FAILED,
        created_at=datetime(2026, 10, 6, tzinfo=UTC),
        order_ref="x",
    )
    topup_record(
        account=account,
        amount=D("40"),
        status=TopUpStatus.REFUNDED,
        created_at=datetime(2026, 10, 7, tzinfo=UTC),
        order_ref="r",
    )
    spend(t.org, date(2026, 9, 30), "99", account=account)  # before the first credit
    for day in range(13, 20):
        spend(t.org, date(2026, 11, day), "3", account=account, project=t.project)
    spend(t.org, TODAY, "1", account=account, project=t.project)
    return account


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_openai_balance_is_credited_topups_and_grants_minus_billed_cost(tenancy: Tenancy) -> None:
    account = _openai_with_credits(tenancy)
    [item] = account_runways(organization=tenancy.org, today=TODAY)
    derived = item.derived
    assert derived is not None
    assert derived.credited == D("115")  # 100 paid + 10 bonus + 5 grant; failed and refunded count nothing
    assert derived.billed == D("22")  # 7 x 3 + 1 today; the September spend predates the first credit
    assert derived.balance == D("93")
    assert item.balance == D("93")
    # Granted credit (bonus, then grant) is used before the paid lot.
    paid = TopUp.objects.get(amount=D("100")).pk
    used = {s.lot.ref: s.used for s in derived.ledger.lots}
    assert used == {f"topup-{paid} bonus": D("10"), "g": D("5"), f"topup-{paid}": D("7")}
    # Runway at 3/day for 31 days; the project is production, so the factor is 1.5.
    assert item.runway is not None and item.runway.days == D("31")
    assert (item.factor_name, item.suggested_topup) == ("production", D("135.0"))
    assert item.account == account


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_console_balance_shows_drift_against_the_derived_balance(tenancy: Tenancy) -> None:
    account = _openai_with_credits(tenancy)
    balance_snapshot_record_manual(
        account=account, remaining=D("95.50"), taken_at=datetime(2026, 11, 18, 20, tzinfo=UTC)
    )
    [item] = account_runways(organization=tenancy.org, today=TODAY)
    assert item.derived is not None and item.derived.snapshot is not None
    assert item.derived.snapshot.source == SnapshotSource.MANUAL
    # Derived through Nov 18: 115 - 6 x 3 = 97; the console said 95.50.
    assert item.derived.derived_at_snapshot == D("97")
    assert item.derived.drift == D("-1.50")


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_gateway_runway_uses_the_latest_snapshot_and_testing_factor(tenancy: Tenancy) -> None:
    account = factories.make_account(tenancy.org, "newapi")
    testing = factories.make_project(tenancy.org, "Sandbox", environment="testing")
    BalanceSnapshot.objects.create(
        provider_account=account, taken_at=NOW - timedelta(days=2), remaining=D("80")
    )
    BalanceSnapshot.objects.create(
        provider_account=account,
        taken_at=NOW - timedelta(hours=1),
        remaining=D("49.995818"),
        raw_quota=24997909,
    )
    for day, amount in zip(range(13, 20), ["1", "2", "3", "4", "5", "6", "14"], strict=True):
        spend(tenancy.org, date(2026, 11, day), amount, account=account, project=testing)
    [item] = account_runways(organization=tenancy.org, today=TODAY)
    assert item.balance == D("49.995818")
    assert item.burn_7 == D("5")  # 35 / 7
    assert item.burn_30 == D("35") / 30
    assert item.runway is not None
    assert item.runway.days == D("9.9991636")
    assert item.runway.runs_out_on == date(2026, 11, 29)
    assert item.runway.low_days == D("49.995818") / D("14")
    assert item.runway.high_days == D("49.995818")
    assert (item.factor_name, item.factor, item.suggested_topup) == ("testing", D("1.2"), D("180.0"))
