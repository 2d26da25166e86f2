"""Exact money: Decimal in Python, integer units of 1e-10 in the database.

Django's DecimalField is stored as REAL on SQLite, so a SUM over it drifts. Every amount that gets
summed is stored as a BigIntegerField counting 1e-10 of its currency (``QUANTUM``), which sums
exactly on SQLite and PostgreSQL alike: 1 New API quota unit (1/500,000 USD) = 20,000 units,
Anthropic's "1234.5670" cents = 123,456,700,000 units. Ten decimal places cover per-token prices;
the int64 column holds up to 922 million currency units per row (a SQLite SUM past that raises
instead of wrapping). Amounts finer than 1e-10 are rounded once, on the way in, with
``STORAGE_ROUNDING``; display rounds once more with ``DISPLAY_ROUNDING``.

This module lives in ``projects`` (the lowest app) because usage and billing both store money and
dependencies point one way: projects <- usage <- billing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from django.db import models

QUANTUM = Decimal("0.0000000001")
QUANTA_PER_UNIT = 10**10
STORAGE_ROUNDING = ROUND_HALF_EVEN
DISPLAY_ROUNDING = ROUND_HALF_UP
ZERO = Decimal("0")

CURRENCY_SYMBOLS = {"USD": "$", "CNY": "¥", "EUR": "€", "GBP": "£", "JPY": "¥"}
DEFAULT_QUOTA_PER_UNIT = 500_000


class MoneyError(ValueError):
    """An amount that cannot be money: NaN, infinite, float, or out of range."""


@dataclass(frozen=True)
class Money:
    """An amount that knows its currency. Adding two currencies raises instead of guessing."""

    amount: Decimal
    currency: str

    def __add__(self, other: Money) -> Money:
        if self.currency != other.currency:
            raise MoneyError(f"cannot add {self.currency} to {other.currency}")
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        if self.currency != other.currency:
            raise MoneyError(f"cannot subtract {other.currency} from {self.currency}")
        return Money(self.amount - other.amount, self.currency)


def to_decimal(value: object) -> Decimal:
    """Return value as a finite Decimal; floats are refused so that money never passes through binary."""
    if isinstance(value, (bool, float)):
        raise MoneyError(f"refusing {type(value).__name__} {value!r} as money; pass a str or Decimal")
    try:
        result = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise MoneyError(f"not a number: {value!r}") from exc
    if not result.is_finite():
        raise MoneyError(f"not a finite amount: {value!r}")
    return result


def to_units(value: object) -> int:
    """Return the amount as integer storage units (1e-10), rounding once with STORAGE_ROUNDING."""
    amount = to_decimal(value)
    return int(amount.quantize(QUANTUM, rounding=STORAGE_ROUNDING).scaleb(10))


def from_units(units: int | Decimal) -> Decimal:
    """Return integer storage units (or a numeric SUM of them) as a Decimal amount, exactly."""
    return Decimal(units).scaleb(-10) if units else ZERO


def quota_to_amount(quota: int, quota_per_unit: int = DEFAULT_QUOTA_PER_UNIT) -> Decimal:
    """Return gateway quota units as currency units, unrounded where the division is exact.

    500,000 quota = 1 USD by default, but resellers set their own scale: never hard-code it.
    A scale that does not divide evenly is rounded to 1e-10 (storage precision).
    """
    if quota_per_unit <= 0:
        raise MoneyError("quota_per_unit must be positive")
    return from_units(to_units(Decimal(quota) / Decimal(quota_per_unit)))


def quantize_for_display(amount: Decimal, places: int = 2) -> Decimal:
    """Round an amount for display, once, with DISPLAY_ROUNDING (half up)."""
    return amount.quantize(Decimal(1).scaleb(-places), rounding=DISPLAY_ROUNDING)


def format_money(amount: Decimal | None, currency: str = "USD", places: int = 2) -> str:
    """Return "$1,234.57" / "¥88.00" / "1,234.57 EUR" for display; "—" for no amount."""
    if amount is None:
        return "—"
    rounded = quantize_for_display(amount, places)
    sign = "-" if rounded < 0 else ""
    body = f"{abs(rounded):,.{places}f}"
    symbol = CURRENCY_SYMBOLS.get(currency.upper())
    if symbol:
        return f"{sign}{symbol}{body}"
    return f"{sign}{body} {currency.upper()}"


def loads_exact(text: str | bytes) -> Any:
    """Parse JSON with numbers as Decimal/int; NaN, Infinity and absurd integers are rejected."""

    def reject_constant(name: str) -> Any:
        raise MoneyError(f"non-finite number {name} in JSON")

    def parse_int(digits: str) -> int:
        if len(digits) > 40:
            raise MoneyError("integer too long")
        return int(digits)

    return json.loads(text, parse_float=Decimal, parse_int=parse_int, parse_constant=reject_constant)


if TYPE_CHECKING:
    from django.db.models.expressions import Combinable


class MoneyField(models.BigIntegerField):  # type: ignore[type-arg]
    """A Decimal amount stored as a BigIntegerField of 1e-10 units of the currency.

    Sums through the ORM (``Sum("cost")``) come back as exact Decimals on both databases.
    The currency lives in a sibling CharField: this field stores only the amount.
    """

    description = "Exact money amount stored as integer 1e-10 units"
    # Read by the django-stubs mypy plugin: attribute types of model instances (Optional when null=True).
    _pyi_private_set_type: Decimal | int | str | Combinable  # type: ignore[assignment]
    _pyi_private_get_type: Decimal  # type: ignore[assignment]

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Decimal | None:
        if value is None:
            return None
        # PostgreSQL returns SUM(bigint) as numeric (Decimal); SQLite returns int.
        return from_units(value if isinstance(value, int) else Decimal(value))

    def to_python(self, value: Any) -> Decimal | None:
        if value is None or isinstance(value, Decimal):
            return value
        return to_decimal(value)

    def get_prep_value(self, value: Any) -> int | None:
        if value is None:
            return None
        if hasattr(value, "resolve_expression"):
            return value  # type: ignore[no-any-return]
        return to_units(value)

    def formfield(self, **kwargs: Any) -> Any:
        from django import forms

        defaults: dict[str, Any] = {"form_class": forms.DecimalField, "decimal_places": 10, "max_digits": 20}
        defaults.update(kwargs)
        return models.Field.formfield(self, **defaults)


def safe_ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    """Return numerator / denominator, or None when the denominator is zero (no data, not zero)."""
    if not denominator:
        return None
    return numerator / denominator


__all__ = [
    "DEFAULT_QUOTA_PER_UNIT",
    "QUANTUM",
    "ZERO",
    "Money",
    "MoneyError",
    "MoneyField",
    "format_money",
    "from_units",
    "loads_exact",
    "quantize_for_display",
    "quota_to_amount",
    "safe_ratio",
    "to_decimal",
    "to_units",
]
