"""Display filters: every amount on a page goes through ``money``; nothing uses floatformat."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import format_html, json_script
from django.utils.safestring import SafeString

from projects.money import format_money

register = template.Library()


@register.filter
def money(amount: Decimal | None, currency: str = "USD") -> str:
    """{{ cost|money:"USD" }} -> "$1,234.57"; None -> "—" (no data, which is not zero)."""
    return format_money(amount, currency or "USD")


@register.filter
def money_precise(amount: Decimal | None, currency: str = "USD") -> str:
    """Six decimals, for unit costs and gateway balances where cents hide the difference."""
    return format_money(amount, currency or "USD", places=6)


@register.filter
def compact(value: int | Decimal | None) -> str:
    """1234 -> "1.2k", 5_300_000 -> "5.3M": token counts in tables and cards."""
    if value is None:
        return "—"
    number = Decimal(value)
    for threshold, suffix in (
        (Decimal(10**12), "T"),
        (Decimal(10**9), "B"),
        (Decimal(10**6), "M"),
        (Decimal(10**3), "k"),
    ):
        if abs(number) >= threshold:
            return f"{(number / threshold).quantize(Decimal('0.1'))}{suffix}"
    return f"{int(number):,}"


@register.filter
def thousands(value: int | None) -> str:
    return "—" if value is None else f"{int(value):,}"


@register.filter
def percent(value: Decimal | None, places: int = 1) -> str:
    if value is None:
        return "—"
    return f"{Decimal(value).quantize(Decimal(1).scaleb(-int(places)))}%"


@register.filter
def bar_value(value: Decimal | None) -> int:
    """A percentage clamped to 0..100 for <progress> bars."""
    if value is None:
        return 0
    return max(0, min(100, int(value)))


@register.filter
def local_time(moment: datetime | None, tz_name: str = "UTC") -> str:
    """Format an instant in the organization's zone, e.g. "Nov 23, 14:05"."""
    if moment is None:
        return "never"
    import zoneinfo

    return timezone.localtime(moment, zoneinfo.ZoneInfo(tz_name)).strftime("%b %d, %H:%M")


@register.simple_tag
def plotly_figure(figure: dict[str, Any], element_id: str, label: str = "") -> SafeString:
    """Render a chart container plus its figure as JSON data; static/js/charts.js draws it.

    No inline script: the figure travels in a json_script block, which a CSP allows.
    """
    payload = json_script(figure, f"{element_id}-data")
    return format_html(
        '<div class="chart" id="{}" data-figure="{}-data" role="img" aria-label="{}"></div>{}',
        element_id,
        element_id,
        label,
        payload,
    )
