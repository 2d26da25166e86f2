"""Usage data for the analytics tests: org "acme" in America/New_York, around the Nov 1 2026 DST change
and the October/November month boundary, with a price list, errors, a retry storm, an unassigned key
and a key that wakes up after a long idle spell. "Now" is frozen at 2026-11-20 15:00 UTC."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from projects.models import ApiKey, ProviderAccount
from tests import factories
from tests.conftest import Tenancy
from usage.models import ModelPrice
from usage.providers.base import UsageRow
from usage.services import usage_rows_upsert

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


@dataclass
class UsageData:
    t: Tenancy
    account: ProviderAccount
    chat_key: ApiKey
    batch_key: ApiKey
    loose_key: ApiKey
    sleepy_key: ApiKey


@pytest.fixture
def frozen_now() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


def build_rows(data: UsageData) -> list[UsageRow]:
    rows: list[UsageRow] = []
    start = datetime(2026, 10, 18, 0, 30, tzinfo=UTC)
    for n in range(34):  # Oct 18 .. Nov 20 UTC, hours vary so some rows fall on the previous local day
        when = start + timedelta(days=n, hours=(n * 7) % 24)
        rows.append(
            factories.usage_row(
                when,
                model="gpt-4o",
                key=data.chat_key.external_id,
                cost=f"{1 + n % 5}.{n:02d}",
                input_tokens=1000 + 10 * n,
                cache_read_tokens=400,
                cache_write_tokens=50,
                output_tokens=300 + n,
                reasoning_tokens=20,
                requests=3 + n % 4,
            )
        )
        rows.append(
            factories.usage_row(
                when + timedelta(minutes=17),
                model="claude-sonnet",
                key=data.batch_key.external_id,
                cost="0.3333333333" if n % 3 else "2.5",
                input_tokens=5000,
                output_tokens=800 * (1 + n % 2),
                requests=2,
            )
        )
        if n % 6 == 0:
            rows.append(
                factories.usage_row(
                    when + timedelta(minutes=5),
                    model="gpt-4o",
                    key=data.chat_key.external_id,
                    cost="0",
                    status="error",
                    error_code="insufficient_balance",
                    requests=2,
                )
            )
    # A retry storm on the unassigned key: 60 failures of 80 calls on Nov 10 (local and UTC).
    storm = datetime(2026, 11, 10, 16, 0, tzinfo=UTC)
    rows.append(
        factories.usage_row(
            storm,
            model="gpt-4o-mini",
            key=data.loose_key.external_id,
            cost="0",
            status="error",
            error_code="429",
            requests=60,
        )
    )
    rows.append(
        factories.usage_row(
            storm + timedelta(minutes=1),
            model="gpt-4o-mini",
            key=data.loose_key.external_id,
            cost="0.8",
            input_tokens=2000,
            output_tokens=100,
            requests=20,
        )
    )
    # The sleepy key ran on Oct 1, then nothing until Nov 18.
    for when, cost in (
        (datetime(2026, 10, 1, 12, tzinfo=UTC), "0.1"),
        (datetime(2026, 11, 18, 12, tzinfo=UTC), "4.25"),
    ):
        rows.append(
            factories.usage_row(
                when, model="gpt-4o-mini", key=data.sleepy_key.external_id, cost=cost, input_tokens=100
            )
        )
    return rows


@pytest.fixture
def usage_data(tenancy: Tenancy, frozen_now: None) -> UsageData:
    org = tenancy.org
    org.timezone = "America/New_York"
    org.save()
    account = factories.make_account(org, "newapi", slug="gateway")
    data = UsageData(
        tenancy,
        account,
        chat_key=factories.make_key(org, project=tenancy.project, account=account, name="chat"),
        batch_key=factories.make_key(org, project=tenancy.other_project, account=account, name="batch"),
        loose_key=factories.make_key(org, account=account, name="loose"),
        sleepy_key=factories.make_key(org, project=tenancy.project, account=account, name="sleepy"),
    )
    # Keys made long ago, so "idle since creation" never triggers by accident.
    ApiKey.objects.filter(organization=org).update(created_at=datetime(2026, 1, 1, tzinfo=UTC))
    ModelPrice.objects.create(
        provider_kind="newapi",
        model="gpt-4o",
        effective_from=datetime(2026, 1, 1).date(),
        input_per_1m=Decimal("2.5"),
        output_per_1m=Decimal("10"),
        cache_read_per_1m=Decimal("1.25"),
    )
    ModelPrice.objects.create(
        provider_kind="newapi",
        model="gpt-4o",
        effective_from=datetime(2026, 11, 5).date(),
        input_per_1m=Decimal("3"),
        output_per_1m=Decimal("12"),
        cache_read_per_1m=Decimal("0.75"),
    )
    usage_rows_upsert(organization=org, rows=build_rows(data), account=account)
    for key in (data.chat_key, data.batch_key, data.loose_key, data.sleepy_key):
        key.refresh_from_db()
    return data
