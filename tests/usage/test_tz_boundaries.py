"""M3: every event lands in exactly one local day of its organization, at day, month and DST edges.

Zones: New York and Berlin (1-hour DST), Lord Howe (30-minute DST), Shanghai (no DST), Kiritimati
(+14, the first day on Earth). Events sit 1 µs either side of local midnights, month ends, 29 Feb
2028, and of every DST transition (both instants of a repeated local hour, and local times in a gap).
Each event has its own cost, so a misplaced event changes a day's sum.
"""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum

from tests import factories
from usage.models import UsageDaily, UsageRecord
from usage.services import usage_rows_upsert

ZONES = ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Shanghai", "Pacific/Kiritimati"]
EDGE_DAYS = [
    date(2026, 1, 31),
    date(2026, 2, 1),
    date(2026, 12, 31),
    date(2027, 1, 1),
    date(2028, 2, 29),
    date(2028, 3, 1),
]
MICRO = timedelta(microseconds=1)


def transitions(zone: zoneinfo.ZoneInfo, year: int) -> list[datetime]:
    """UTC instants where the zone's offset changes during ``year`` (found hour by hour, then to the minute)."""
    found = []
    at = datetime(year, 1, 1, tzinfo=UTC)
    while at.year == year:
        nxt = at + timedelta(hours=1)
        if at.astimezone(zone).utcoffset() != nxt.astimezone(zone).utcoffset():
            minute = at
            while minute.astimezone(zone).utcoffset() == at.astimezone(zone).utcoffset():
                minute += timedelta(minutes=1)
            found.append(minute)
        at = nxt
    return found


def edge_instants(zone: zoneinfo.ZoneInfo) -> list[datetime]:
    instants: set[datetime] = set()
    for day in EDGE_DAYS:
        midnight = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
        instants |= {midnight - MICRO, midnight, midnight + timedelta(hours=12)}
    for change in transitions(zone, 2026):
        instants |= {change - MICRO, change, change + MICRO}
        local = change.astimezone(zone).replace(tzinfo=None)
        for delta in (timedelta(minutes=-45), timedelta(minutes=-15), timedelta(minutes=15)):
            for fold in (0, 1):  # both readings of a repeated hour; a gap time maps to one side of it
                instants.add((local + delta).replace(tzinfo=zone, fold=fold).astimezone(UTC))
    return sorted(instants)


@pytest.mark.django_db
@pytest.mark.parametrize("zone_name", ZONES)
def test_each_event_lands_in_exactly_one_local_day_and_days_add_up_to_months(zone_name: str) -> None:
    zone = zoneinfo.ZoneInfo(zone_name)
    org = factories.make_org("Edge", timezone=zone_name)
    account = factories.make_account(org, "newapi")
    instants = edge_instants(zone)
    assert len(instants) >= 3 * len(EDGE_DAYS)
    expected_day: dict[date, Decimal] = defaultdict(Decimal)
    expected_month: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    rows = []
    for n, at in enumerate(instants):
        cost = Decimal(2**n % 9973) / Decimal(10**6) + Decimal("0.0000000001") * n  # distinct per event
        local_day = at.astimezone(zone).date()
        expected_day[local_day] += cost
        expected_month[(local_day.year, local_day.month)] += cost
        rows.append(factories.usage_row(at, cost=str(cost), natural_key=f"edge-{n}"))
    usage_rows_upsert(organization=org, rows=rows, account=account)

    stored_days = {
        r["day"]: r["cost"]
        for r in UsageDaily.objects.filter(organization=org).values("day").annotate(cost=Sum("cost"))
    }
    assert stored_days == dict(expected_day)
    months: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    for day, cost in stored_days.items():
        months[(day.year, day.month)] += cost
    assert months == expected_month
    raw = UsageRecord.objects.filter(organization=org).aggregate(c=Sum("cost"))["c"]
    assert sum(stored_days.values(), Decimal(0)) == raw == sum(expected_day.values(), Decimal(0))
    assert UsageRecord.objects.filter(organization=org).count() == len(instants)
