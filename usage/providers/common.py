"""Small parsing helpers shared by the connectors: exact numbers, times, envelopes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from projects.money import MoneyError, to_decimal

from .http import ResponseError


def as_int(value: Any) -> int:
    """Return a provider count as int; None/'' are 0, integral Decimals and digit strings are accepted."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        number = to_decimal(value)
    except MoneyError as exc:
        raise ResponseError(f"expected a whole number, got {str(value)[:40]!r}") from exc
    if number != number.to_integral_value():
        raise ResponseError(f"expected a whole number, got {number}")
    return int(number)


def as_decimal(value: Any) -> Decimal:
    """Return a provider amount (JSON number parsed as Decimal, or a decimal string) exactly."""
    try:
        return to_decimal(value if value is not None else 0)
    except MoneyError as exc:
        raise ResponseError(f"expected an amount, got {str(value)[:40]!r}") from exc


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def from_unix(seconds: Any) -> datetime:
    return datetime.fromtimestamp(as_int(seconds), tz=UTC)


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
