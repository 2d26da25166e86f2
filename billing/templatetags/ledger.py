"""Billing display filters: day counts for runway (money itself always goes through ``qb.money``)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django import template

register = template.Library()


@register.filter
def days(value: Decimal | None, places: int = 1) -> str:
    """12.345 -> "12.3" (half up); None -> "—"."""
    if value is None:
        return "—"
    return f"{Decimal(value).quantize(Decimal(1).scaleb(-int(places)), rounding=ROUND_HALF_UP)}"
