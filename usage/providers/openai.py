"""OpenAI Admin API: hourly completion usage buckets, the daily Costs API, projects and their keys.

``input_tokens`` in the Usage API already *includes* cached (and cache-write) tokens, which is the
convention usage.models uses, so tokens pass through. Usage carries no cost: buckets are priced
from ModelPrice (an estimate) and the Costs API (billed truth) corrects it per day and model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from .base import Connector, CostLine, KeyInfo, UsagePage, UsageRow
from .common import (
    as_decimal,
    as_dict,
    as_int,
    as_list,
    ceil_day,
    ceil_hour,
    checked,
    floor_day,
    floor_hour,
    from_unix,
    list_field,
    to_unix,
)
from .http import ProviderHTTP, ResponseError

MAX_PAGES = 1000
GROUP_BY = ["project_id", "api_key_id", "model"]


def next_page(body: Any) -> str | None:
    """Return the cursor to send as ``page`` while ``has_more`` is true (OpenAI and Anthropic alike)."""
    if not isinstance(body, dict) or not body.get("has_more"):
        return None
    cursor = body.get("next_page")
    if not cursor:
        raise ResponseError("has_more without next_page")
    return str(cursor)


def cursor_pages(http: ProviderHTTP, path: str, params: dict[str, Any]) -> Iterator[Any]:
    """Yield each page's body, following ``next_page`` (OpenAI's and Anthropic's admin APIs page alike).

    Raises ResponseError past MAX_PAGES, so a provider that keeps answering has_more cannot loop for ever.
    """
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        body = http.get_json(path, {**params, "page": cursor} if cursor else params)
        yield body
        cursor = next_page(body)
        if cursor is None:
            return
    raise ResponseError(f"more than {MAX_PAGES} pages")


class OpenAIConnector(Connector):
    kind: ClassVar[str] = "openai"
    overlap: ClassVar[timedelta] = timedelta(hours=48)
    chunk: ClassVar[timedelta] = timedelta(days=7)
    has_balance: ClassVar[bool] = False
    has_costs: ClassVar[bool] = True

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[Any]:
        return cursor_pages(self.http, path, params)

    def fetch_usage(self, start: datetime, end: datetime) -> Iterator[UsagePage]:
        """Yield hourly buckets per project, key and model in [start, end), hours aligned to UTC."""
        params = {
            "start_time": to_unix(floor_hour(start)),
            "end_time": to_unix(ceil_hour(end)),
            "bucket_width": "1h",
            "group_by": GROUP_BY,
            "limit": 168,
        }
        for body in self._pages("/v1/organization/usage/completions", params):
            rows: list[UsageRow] = []
            for bucket in list_field(body):
                bucket = as_dict(bucket)
                started = as_int(bucket.get("start_time"))
                width = as_int(bucket.get("end_time")) - started if bucket.get("end_time") else 3600
                for result in as_list(bucket.get("results"), "results"):
                    row = self.parse_result(as_dict(result), started, width)
                    if row is not None:
                        rows.append(row)
            yield UsagePage(rows=rows, next_cursor=next_page(body))

    def parse_result(self, result: dict[str, Any], started: int, width: int) -> UsageRow | None:
        requests = as_int(result.get("num_model_requests"))
        input_tokens = as_int(result.get("input_tokens"))
        output_tokens = as_int(result.get("output_tokens"))
        if not (requests or input_tokens or output_tokens):
            return None
        cache_read = as_int(result.get("input_cached_tokens"))
        cache_write = as_int(result.get("input_cache_write_tokens"))
        model = str(result.get("model") or "") or "unknown"
        key_id = str(result.get("api_key_id") or "")
        dims = (
            started,
            result.get("project_id") or "",
            key_id,
            model,
            result.get("user_id") or "",
            result.get("batch") if result.get("batch") is not None else "",
            result.get("service_tier") or "",
        )
        return checked(
            UsageRow(
                occurred_at=from_unix(started),
                model=model,
                natural_key="|".join(str(d) for d in dims),
                input_tokens=input_tokens,
                # Cached tokens are a subset of input_tokens here; clamp against inconsistent buckets.
                cache_read_tokens=min(cache_read, input_tokens),
                cache_write_tokens=min(cache_write, max(0, input_tokens - cache_read)),
                output_tokens=output_tokens,
                requests=requests,
                bucket_seconds=max(width, 0),
                cost=None,
                key_external_id=key_id,
                key_name=key_id,
            )
        )

    def fetch_costs(self, start: datetime, end: datetime) -> list[CostLine]:
        """Return billed cost per UTC day and model (the part of ``line_item`` before the comma)."""
        first = floor_day(start)
        params = {
            "start_time": to_unix(first),
            "end_time": to_unix(ceil_day(end)),
            "bucket_width": "1d",
            "group_by": ["line_item"],
            "limit": 180,
        }
        totals: dict[tuple[date, str, str], Decimal] = defaultdict(Decimal)
        for body in self._pages("/v1/organization/costs", params):
            for bucket in list_field(body):
                bucket = as_dict(bucket)
                day = from_unix(bucket.get("start_time")).date()
                for result in as_list(bucket.get("results"), "results"):
                    result = as_dict(result)
                    amount = as_dict(result.get("amount"))
                    line_item = str(result.get("line_item") or "")
                    model = line_item.split(",", 1)[0].strip() or "other"
                    currency = str(amount.get("currency") or "usd").upper()
                    totals[(day, model, currency)] += as_decimal(amount.get("value"))
        return [CostLine(day=d, model=m, amount=a, currency=c) for (d, m, c), a in sorted(totals.items())]

    def list_keys(self) -> list[KeyInfo]:
        """Return every API key of every (unarchived) project, with the project id it belongs to."""
        keys: list[KeyInfo] = []
        for project in self._listing("/v1/organization/projects"):
            project_id = str(project.get("id") or "")
            if not project_id:
                continue
            for key in self._listing(f"/v1/organization/projects/{project_id}/api_keys"):
                if key.get("id"):
                    keys.append(
                        KeyInfo(
                            external_id=str(key["id"]),
                            name=str(key.get("name") or key["id"])[:200],
                            redacted_hint=str(key.get("redacted_value") or "")[:40],
                            provider_project=project_id,
                        )
                    )
        return keys

    def _listing(self, path: str) -> Iterator[dict[str, Any]]:
        after: str | None = None
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"limit": 100}
            if after:
                params["after"] = after
            body = self.http.get_json(path, params)
            for item in list_field(body):
                yield as_dict(item)
            if not as_dict(body).get("has_more"):
                return
            after = str(as_dict(body).get("last_id") or "")
            if not after:
                return
