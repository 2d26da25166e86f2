"""Anthropic Admin API: hourly message usage and the daily cost report (amounts in cents).

Anthropic's token classes are disjoint (uncached input, cache read, 5 m and 1 h cache writes);
they are added up into ``input_tokens`` as usage.models' convention says.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from .base import Connector, CostLine, UsagePage, UsageRow
from .common import (
    MAX_AMOUNT,
    as_decimal,
    as_dict,
    as_int,
    as_list,
    ceil_day,
    ceil_hour,
    checked,
    floor_day,
    floor_hour,
    list_field,
    parse_rfc3339,
    rfc3339,
)
from .openai import cursor_pages, next_page

CENTS = Decimal(100)


class AnthropicConnector(Connector):
    kind: ClassVar[str] = "anthropic"
    overlap: ClassVar[timedelta] = timedelta(hours=48)
    chunk: ClassVar[timedelta] = timedelta(days=7)
    has_balance: ClassVar[bool] = False
    has_costs: ClassVar[bool] = True

    def headers(self) -> dict[str, str]:
        return {
            "x-api-key": self.config.credential,
            "anthropic-version": "2023-06-01",
            "Accept": "application/json",
        }

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[Any]:
        return cursor_pages(self.http, path, params)

    def fetch_usage(self, start: datetime, end: datetime) -> Iterator[UsagePage]:
        """Yield hourly buckets per key, workspace and model in [start, end), hours aligned to UTC."""
        params = {
            "starting_at": rfc3339(floor_hour(start)),
            "ending_at": rfc3339(ceil_hour(end)),
            "bucket_width": "1h",
            "group_by[]": ["api_key_id", "workspace_id", "model"],
            "limit": 168,
        }
        for body in self._pages("/v1/organizations/usage_report/messages", params):
            rows: list[UsageRow] = []
            for bucket in list_field(body):
                bucket = as_dict(bucket)
                started = parse_rfc3339(bucket.get("starting_at"))
                ended = parse_rfc3339(bucket["ending_at"]) if bucket.get("ending_at") else None
                width = int((ended - started).total_seconds()) if ended else 3600
                for result in as_list(bucket.get("results"), "results"):
                    row = self.parse_result(as_dict(result), started, width)
                    if row is not None:
                        rows.append(row)
            yield UsagePage(rows=rows, next_cursor=next_page(body))

    def parse_result(self, result: dict[str, Any], started: datetime, width: int) -> UsageRow | None:
        uncached = as_int(result.get("uncached_input_tokens"))
        cache_read = as_int(result.get("cache_read_input_tokens"))
        creation = as_dict(result.get("cache_creation"))
        cache_write = as_int(creation.get("ephemeral_5m_input_tokens")) + as_int(
            creation.get("ephemeral_1h_input_tokens")
        )
        output = as_int(result.get("output_tokens"))
        # The report has no request count; builds that add one are honoured.
        requests = as_int(result.get("requests", result.get("num_model_requests")))
        if not (uncached or cache_read or cache_write or output or requests):
            return None
        model = str(result.get("model") or "") or "unknown"
        key_id = str(result.get("api_key_id") or "")
        dims = (
            rfc3339(started),
            key_id,
            result.get("workspace_id") or "",
            model,
            result.get("service_tier") or "",
            result.get("context_window") or "",
            result.get("inference_geo") or "",
        )
        return checked(
            UsageRow(
                occurred_at=started,
                model=model,
                natural_key="|".join(str(d) for d in dims),
                input_tokens=uncached + cache_read + cache_write,
                cache_read_tokens=cache_read,
                cache_write_tokens=cache_write,
                output_tokens=output,
                requests=requests,
                bucket_seconds=max(width, 0),
                cost=None,
                key_external_id=key_id,
                key_name=key_id,
            )
        )

    def fetch_costs(self, start: datetime, end: datetime) -> list[CostLine]:
        """Return billed cost per UTC day and model; ``amount`` strings are cents (÷ 100, exactly)."""
        params = {
            "starting_at": rfc3339(floor_day(start)),
            "ending_at": rfc3339(ceil_day(end)),
            "bucket_width": "1d",
            "group_by[]": ["description"],
            "limit": 31,
        }
        totals: dict[tuple[date, str, str], Decimal] = defaultdict(Decimal)
        for body in self._pages("/v1/organizations/cost_report", params):
            for bucket in list_field(body):
                bucket = as_dict(bucket)
                day = parse_rfc3339(bucket.get("starting_at")).date()
                for result in as_list(bucket.get("results"), "results"):
                    result = as_dict(result)
                    model = str(result.get("model") or "") or str(result.get("cost_type") or "other")
                    currency = str(result.get("currency") or "USD").upper()
                    totals[(day, model, currency)] += (
                        as_decimal(result.get("amount"), MAX_AMOUNT * CENTS) / CENTS
                    )
        return [CostLine(day=d, model=m, amount=a, currency=c) for (d, m, c), a in sorted(totals.items())]
