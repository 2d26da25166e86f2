"""The one write path: idempotent upserts by natural key, on SQLite (Python diff) and PostgreSQL (COPY)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum

from tests import factories
from usage.models import UsageDaily, UsageRecord
from usage.services import COPY_THRESHOLD, usage_rows_upsert

START = datetime(2026, 10, 30, 22, 0, tzinfo=UTC)


def _rows(count: int, *, cost: str = "0.0000000123", shift: timedelta = timedelta(0)) -> list:  # type: ignore[type-arg]
    return [
        factories.usage_row(
            START + shift + timedelta(minutes=7 * n),
            natural_key=f"req-{n}",
            cost=cost,
            input_tokens=n,
            output_tokens=2 * n,
            key=f"key-{n % 3}",
        )
        for n in range(count)
    ]


def _assert_rollups_equal_raw(org) -> None:  # type: ignore[no-untyped-def]
    fields = ("cost", "input_tokens", "output_tokens", "requests")
    raw = UsageRecord.objects.filter(organization=org).aggregate(**{f: Sum(f) for f in fields})
    rolled = UsageDaily.objects.filter(organization=org).aggregate(**{f: Sum(f) for f in fields})
    assert rolled == raw


@pytest.mark.django_db
def test_large_batches_insert_then_stay_unchanged_then_update_in_place() -> None:
    org = factories.make_org(timezone="America/New_York")
    account = factories.make_account(org, "openai")
    count = COPY_THRESHOLD * 3 + 7

    first = usage_rows_upsert(organization=org, rows=_rows(count), account=account)
    assert (first.new, first.updated, first.unchanged) == (count, 0, 0)
    assert (
        UsageRecord.objects.filter(organization=org).aggregate(c=Sum("cost"))["c"]
        == Decimal("0.0000000123") * count
    )
    _assert_rollups_equal_raw(org)

    again = usage_rows_upsert(organization=org, rows=_rows(count), account=account)
    assert (again.new, again.updated, again.unchanged) == (0, 0, count)
    assert again.days == set()

    # Revise every row: new cost, and moved two days later (old and new days both recomputed).
    revised = usage_rows_upsert(
        organization=org, rows=_rows(count, cost="1.5", shift=timedelta(days=2)), account=account
    )
    assert (revised.new, revised.updated, revised.unchanged) == (0, count, 0)
    assert UsageRecord.objects.filter(organization=org).count() == count
    assert (
        UsageRecord.objects.filter(organization=org).aggregate(c=Sum("cost"))["c"] == Decimal("1.5") * count
    )
    _assert_rollups_equal_raw(org)
    first_day = START.astimezone(org.zoneinfo).date()
    assert (
        first_day in revised.days and not UsageDaily.objects.filter(organization=org, day=first_day).exists()
    )


@pytest.mark.django_db
def test_a_natural_key_twice_in_one_batch_keeps_the_later_row() -> None:
    org = factories.make_org()
    rows = _rows(COPY_THRESHOLD + 1)
    rows.append(factories.usage_row(START, natural_key="req-0", cost="9"))
    result = usage_rows_upsert(organization=org, rows=rows)
    assert result.new == COPY_THRESHOLD + 1 and result.unchanged == 1
    assert UsageRecord.objects.get(organization=org, input_tokens=0).cost == Decimal("9")
    _assert_rollups_equal_raw(org)


@pytest.mark.django_db
def test_fast_row_conversion_stores_exactly_what_the_orm_would_store() -> None:
    """The bulk writers bypass get_db_prep_save for speed; each column must still match it."""
    from django.db import connection
    from django.utils import timezone

    from usage.services import CANDIDATE_COLUMNS, _db_rows, _record_fields

    fields = _record_fields()
    # The writers name their columns from this list: it must be every stored column, each once.
    stored = [f.attname for f in UsageRecord._meta.concrete_fields if not f.primary_key]
    assert sorted(f.attname for f in fields) == sorted(stored) and len(fields) == len(stored)
    shanghai = timezone.get_fixed_timezone(480)
    base = {f.attname: None for f in fields}
    rows = [
        {
            **base,
            "organization_id": 1,
            "source": "connector",
            "occurred_at": datetime(2026, 11, 1, 7, 59, 59, 123456, tzinfo=shanghai),
            "bucket_seconds": 0,
            "model": "gpt-4o",
            "input_tokens": 10**12,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "output_tokens": 3,
            "reasoning_tokens": 0,
            "requests": 1,
            "cost": Decimal("49.995818"),
            "currency": "USD",
            "cost_source": "provider",
            "raw_quota": 24997909,
            "status": "success",
            "error_code": "",
            "dedupe_key": "k1",
        },
        {
            **base,
            "organization_id": 1,
            "occurred_at": datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
            "cost": Decimal("0.0000000123"),
            "latency_ms": 812,
            "project_id": 4,
            "api_key_id": 9,
            "dedupe_key": "k2",
        },
    ]
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    expected = [
        [
            f.get_db_prep_save(now if f.attname == "ingested_at" else row[f.attname], connection)
            for f in fields
        ]
        for row in rows
    ]
    as_tuples = [tuple(row[name] for name in CANDIDATE_COLUMNS) for row in rows]
    assert list(_db_rows(fields, as_tuples, now)) == expected


@pytest.mark.django_db
def test_deleting_a_project_key_or_account_clears_its_usage_references_and_a_used_price_is_protected() -> (
    None
):
    """Only the organization reference is a database foreign key on usage records (ingest speed):
    Django's on_delete must still keep the other references true when an admin deletes a row."""
    from datetime import date

    from django.db.models import ProtectedError

    from usage.models import ModelPrice

    org = factories.make_org()
    account = factories.make_account(org, "openai")
    project = factories.make_project(org)
    key = factories.make_key(org, project=project, account=account)
    count = COPY_THRESHOLD + 1
    rows = [
        factories.usage_row(
            START + timedelta(minutes=n), natural_key=f"r{n}", key=key.external_id, cost="0.25"
        )
        for n in range(count)
    ]
    usage_rows_upsert(organization=org, rows=rows, account=account)
    records = UsageRecord.objects.filter(organization=org)
    assert records.filter(project=project, api_key=key, provider_account=account).count() == count
    price = ModelPrice.objects.create(
        provider_kind="openai",
        model="gpt-4o",
        effective_from=date(2026, 1, 1),
        input_per_1m=Decimal("2.5"),
        output_per_1m=Decimal("10"),
    )
    records.filter(pk=records.first().pk).update(price=price)  # type: ignore[union-attr]

    with pytest.raises(ProtectedError):
        price.delete()
    project.delete()
    assert not records.filter(project_id__isnull=False).exists()
    key.delete()
    assert not records.filter(api_key_id__isnull=False).exists()
    account.delete()
    assert not records.filter(provider_account_id__isnull=False).exists()
    # The rows themselves, and every cent, stay with the organization.
    assert records.count() == count and records.aggregate(c=Sum("cost"))["c"] == Decimal("0.25") * count
