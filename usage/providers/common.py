"""Small parsing helpers shared by the connectors: exact numbers, times, envelopes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from projects.money import MoneyError, to_decimal

from ..records import RecordError, check_row
from .base import UsageRow
from .http import ResponseError

# Past these a provider number is garbage, not usage: refused before any arithmetic overflows on it
# (the push API's token limit; money as the int64 of 1e-10 units MoneyField stores can hold).
MAX_COUNT = 10**15
MAX_AMOUNT = Decimal(100_000_000)
# Unix times a usage row can carry (usage.records takes the same 2000-2100 range).
EARLIEST_UNIX = 946_684_800
LATEST_UNIX = 4_102_444_800


def as_int(value: Any) -> int:
    """Return a provider count as int; None/'' are 0, integral Decimals and digit strings are accepted."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        number = Decimal(value)
    else:
        try:
            number = to_decimal(value)
        except MoneyError as exc:
            raise ResponseError(f"expected a whole number, got {str(value)[:40]!r}") from exc
    if abs(number) > MAX_COUNT:
        raise ResponseError(f"number out of range: {str(value)[:40]!r}")
    if number != number.to_integral_value():
        raise ResponseError(f"expected a whole number, got {number}")
    return int(number)


def as_decimal(value: Any, limit: Decimal = MAX_AMOUNT) -> Decimal:
    """Return a provider amount (JSON number parsed as Decimal, or a decimal string) exactly."""
    try:
        amount = to_decimal(value if value is not None else 0)
    except MoneyError as exc:
        raise ResponseError(f"expected an amount, got {str(value)[:40]!r}") from exc
    if abs(amount) >= limit:
        raise ResponseError(f"amount out of range: {str(value)[:40]!r}")
    return amount


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any, name: str) -> list[Any]:
    """Return an optional list field (None is empty); anything else raises a ResponseError naming it."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise ResponseError(f"unexpected response shape: {name} is not a list")


def from_unix(seconds: Any) -> datetime:
    """Return an aware UTC datetime; a missing, zero or out-of-range time raises (it would be 1970)."""
    moment = as_int(seconds)
    if not EARLIEST_UNIX <= moment < LATEST_UNIX:
        raise ResponseError(f"expected a Unix time between 2000 and 2100, got {str(seconds)[:40]!r}")
    return datetime.fromtimestamp(moment, tz=UTC)


def checked(row: UsageRow) -> UsageRow:
    """Return the row if the database would store it (the push API's limits), else raise a ResponseError.

    Why: a provider row with negative or absurd counts, a 1970 time or a cost past the column used
    to be parsed and then failed the whole chunk's write with an IntegrityError or OverflowError.
    """
    try:
        check_row(row)
    except RecordError as exc:
        raise ResponseError(f"row {row.natural_key[:80]!r} rejected: {exc}") from None
    return row


def to_unix(moment: datetime) -> int:
    return int(moment.timestamp())


def parse_rfc3339(value: Any) -> datetime:
    """Return an aware UTC datetime from an RFC 3339 / ISO 8601 string (``Z`` accepted)."""
    if not isinstance(value, str) or not value:
        raise ResponseError(f"expected an RFC 3339 time, got {str(value)[:40]!r}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ResponseError(f"expected an RFC 3339 time, got {value[:40]!r}") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floored = floor_hour(moment)
    return floored if floored == moment else floored + timedelta(hours=1)


def floor_day(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def ceil_day(moment: datetime) -> datetime:
    floored = floor_day(moment)
    return floored if floored == moment else floored + timedelta(days=1)


def utc_days(start: datetime, end: datetime) -> Iterator[date]:
    """Yield the UTC dates that [start, end) touches."""
    day = floor_day(start)
    while day < end:
        yield day.date()
        day += timedelta(days=1)


def list_field(data: Any, name: str = "data") -> list[Any]:
    """Return ``data[name]`` when it is a list, else raise a ResponseError naming the shape."""
    if isinstance(data, dict) and isinstance(data.get(name), list):
        return list(data[name])
    raise ResponseError(f"unexpected response shape: no list {name!r}")
