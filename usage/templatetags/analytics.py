"""Table cells for analytics panels: one tag formats a value by its column kind."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from django import template
from django.utils.html import format_html

from projects.templatetags.qb import compact, local_time, money, money_precise, percent, thousands
from usage.panels import Column, Link

register = template.Library()


@register.simple_tag
def cell(value: object, column: Column, currency: str, tz_name: str = "UTC") -> str:
    """Format one table cell; None is "—" (no data), which is distinct from 0."""
    if value is None or value == "":
        return "—" if column.numeric or column.kind in {"date", "datetime"} else ""
    if isinstance(value, Link):
        return format_html('<a href="{}">{}</a>', value.url, value.text)
    kind = column.kind
    if kind == "money" and isinstance(value, Decimal):
        return money(value, currency)
    if kind == "money6" and isinstance(value, Decimal):
        return money_precise(value, currency)
    if kind == "percent" and isinstance(value, Decimal):
        return percent(value)
    if kind == "tokens" and isinstance(value, int):
        return compact(value)
    if kind == "int" and isinstance(value, int):
        return thousands(value)
    if kind == "datetime" and isinstance(value, datetime):
        return local_time(value, tz_name)
    if kind == "date" and isinstance(value, date):
        return value.isoformat()
    if kind == "flag":
        return "▲ yes" if value else ""
    return str(value)
