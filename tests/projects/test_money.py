from __future__ import annotations

import random
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum
from hypothesis import given
from hypothesis import strategies as st

from billing.models import TopUp
from projects.money import MoneyError, format_money, loads_exact, quota_to_amount, to_decimal, to_units
from tests import factories


def test_worked_example_quota_converts_unrounded() -> None:
    assert quota_to_amount(24997909) == Decimal("49.995818")
    assert quota_to_amount(10027091) == Decimal("20.054182")
    assert quota_to_amount(24997909 + 10027091) == Decimal("70.05")
    assert format_money(quota_to_amount(24997909), "USD") == "$50.00"


def test_other_quota_scale_uses_its_own_divisor() -> None:
    assert quota_to_amount(1_000_000, 100_000) == Decimal("10")
    assert quota_to_amount(500_000) == Decimal("1")


@given(st.integers(min_value=0, max_value=10**15), st.integers(min_value=0, max_value=10**15))
def test_quota_conversion_is_additive(a: int, b: int) -> None:
    assert quota_to_amount(a + b) == quota_to_amount(a) + quota_to_amount(b)


def test_float_nan_and_infinity_are_refused() -> None:
    with pytest.raises(MoneyError):
        to_decimal(0.1)
    with pytest.raises(MoneyError):
        to_units("NaN")
    with pytest.raises(MoneyError):
        loads_exact('{"amount": Infinity}')
    assert loads_exact('{"amount": 1.10}') == {"amount": Decimal("1.10")}


def test_display_formats_currency_and_thousands() -> None:
    assert format_money(Decimal("1234567.005"), "USD") == "$1,234,567.01"
    assert format_money(Decimal("-12.5"), "CNY") == "-¥12.50"
    assert format_money(Decimal("3"), "CHF") == "3.00 CHF"
    assert format_money(None) == "—"


@pytest.mark.django_db
def test_one_million_ten_place_amounts_sum_exactly_through_the_orm() -> None:
    """M5: the ORM sum equals Python's Decimal sum on SQLite and PostgreSQL alike."""
    org = factories.make_org()
    account = factories.make_account(org)
    rng = random.Random(5)
    amounts = [Decimal(rng.randrange(0, 10**12)).scaleb(-10) for _ in range(1_000_000)]
    from django.utils import timezone

    now = timezone.now()
    # Insert through each field's own conversion (get_db_prep_save) but in bulk (COPY / executemany):
    # a million model instances would make this test a minute long without testing more.
    template = TopUp(provider_account=account, amount=Decimal(0), created_at=now, status="credited")
    fields = [f for f in TopUp._meta.concrete_fields if not f.primary_key]
    base = [f.get_db_prep_save(getattr(template, f.attname), connection) for f in fields]
    amount_index = [f.name for f in fields].index("amount")
    amount_field = fields[amount_index]
    values = []
    for amount in amounts:
        row = list(base)
        row[amount_index] = amount_field.get_db_prep_save(amount, connection)
        values.append(row)
    table = TopUp._meta.db_table
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.connection.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for value in values:
                    copy.write_row(value)
        else:
            placeholders = ", ".join(["%s"] * len(fields))
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", values)
    stored = TopUp.objects.aggregate(total=Sum("amount"))["total"]
    assert stored == sum(amounts, Decimal(0))
    assert isinstance(stored, Decimal)


@pytest.mark.django_db
def test_twenty_digit_amount_round_trips() -> None:
    org = factories.make_org()
    account = factories.make_account(org)
    from django.utils import timezone

    big = Decimal("123456789.0123456789")
    topup = TopUp.objects.create(provider_account=account, amount=big, created_at=timezone.now())
    topup.refresh_from_db()
    assert topup.amount == big
