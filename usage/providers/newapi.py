"""New API and One API gateways (LaoZhang and most resellers): balance, request logs, top-ups.

Differences handled here (providers.md §1): New API pages are 1-based with ``page_size`` (always
sent) and a ``{items,total}`` page object; One API pages are 0-based, fixed size, a plain array.
Log ids are not stable (New API ``id % 1024``, One API 0), so rows get a natural key; pages are read
inside a closed time window, which new rows cannot shift.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar

from projects.money import MoneyError, loads_exact, quota_to_amount

from .base import BalanceReading, Connector, TopUpReading, UsagePage, UsageRow
from .common import as_decimal, as_dict, as_int, checked, from_unix, to_unix
from .http import AuthError, ResponseError, TransientProviderError

PAGE_SIZE = 100
MAX_PAGES = 20_000
# A window whose total changes while paging is re-read from page one, at most this often.
MAX_RESTARTS = 3
LOG_CONSUME = 2
LOG_ERROR = 5  # New API only; One API's 5 is "test".
LOG_REFUND = 6  # New API only.
# Messages the gateways send (HTTP 200, success:false) when the access token or user is refused.
AUTH_HINTS = ("access token", "无权", "未登录", "封禁", "权限不足", "new-api-user", "unauthorized")
TOPUP_STATUS = {
    "success": "credited",
    "pending": "pending",
    "failed": "failed",
    "expired": "failed",
    "refunded": "refunded",
}


def unwrap(body: Any) -> Any:
    """Return ``data`` of a gateway envelope; ``success:false`` raises.

    A refused token or user is an AuthError (stop, ask a human); any other ``success:false``
    ("upstream saturated, retry later", database errors) is treated as transient.
    """
    if not isinstance(body, dict) or "success" not in body:
        raise ResponseError("unexpected response shape: no success flag")
    if body.get("success") is not True:
        message = str(body.get("message") or "success:false without a message")
        lowered = message.lower()
        if any(hint in lowered for hint in AUTH_HINTS):
            raise AuthError(f"gateway refused the access token: {message[:200]}")
        raise TransientProviderError(f"gateway error: {message[:200]}")
    return body.get("data")


def parse_other(value: Any) -> dict[str, Any]:
    """Return the log's ``other`` as a dict: a JSON string (New API ≤2025) or an object (newest)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip():
        try:
            parsed = loads_exact(value)
        except (ValueError, MoneyError):
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


class NewApiConnector(Connector):
    kind: ClassVar[str] = "newapi"
    has_topups: ClassVar[bool] = True
    one_based_pages: ClassVar[bool] = True

    def headers(self) -> dict[str, str]:
        # Both gateways accept "Bearer <token>" (One API strips the prefix).
        headers = super().headers()
        if self.config.newapi_user_id is not None:
            headers["New-Api-User"] = str(self.config.newapi_user_id)
        return headers

    def fetch_balance(self) -> list[BalanceReading]:
        # Only the numbers are kept: the raw body can hold the caller's access_token.
        data = as_dict(unwrap(self.http.get_json("/api/user/self")))
        if "quota" not in data:
            raise ResponseError("unexpected response shape: no quota in /api/user/self")
        quota = as_int(data.get("quota"))
        used = as_int(data.get("used_quota"))
        qpu = self.config.quota_per_unit
        return [
            BalanceReading(
                remaining=quota_to_amount(quota, qpu),
                currency=self.config.currency,
                used=quota_to_amount(used, qpu),
                total_credits=quota_to_amount(quota + used, qpu),
                raw_quota=quota,
                raw_used_quota=used,
                request_count=as_int(data.get("request_count")) if "request_count" in data else None,
            )
        ]

    def fetch_quota_per_unit(self) -> int | None:
        """Return the site's ``quota_per_unit`` from the public /api/status, or None if it does not say."""
        data = as_dict(unwrap(self.http.get_json("/api/status")))
        value = data.get("quota_per_unit")
        return as_int(value) if value not in (None, "") else None

    def _page_params(self, page: int, start: datetime, end: datetime) -> dict[str, Any]:
        params: dict[str, Any] = {
            "p": page if self.one_based_pages else page - 1,
            "type": 0,
            "start_timestamp": to_unix(start),
            # The gateways' end is inclusive; the window is [start, end).
            "end_timestamp": to_unix(end) - 1,
        }
        if self.one_based_pages:
            # The April 2025 build turned a missing page_size into 0 rows.
            params["page_size"] = PAGE_SIZE
        return params

    def _read_window(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Return every log item in the window, re-reading from page one if the total moves while paging."""
        for _ in range(MAX_RESTARTS + 1):
            items: list[dict[str, Any]] = []
            first_total: int | None = None
            first_len: int | None = None
            moved = False
            for page in range(1, MAX_PAGES + 1):
                data = unwrap(self.http.get_json("/api/log/self", self._page_params(page, start, end)))
                if isinstance(data, list):  # One API, and old New API builds
                    batch, total = data, None
                elif isinstance(data, dict):
                    batch = data.get("items") or []
                    total = as_int(data["total"]) if data.get("total") is not None else None
                elif data is None:
                    batch, total = [], None
                else:
                    raise ResponseError("unexpected response shape in /api/log/self")
                if not isinstance(batch, list):
                    raise ResponseError("unexpected response shape: items is not a list")
                if total is not None:
                    if first_total is None:
                        first_total = total
                    elif total != first_total:
                        moved = True
                        break
                items.extend(item for item in batch if isinstance(item, dict))
                if first_len is None:
                    first_len = len(batch)
                if not batch or len(batch) < (first_len or 1):
                    break
                if total is not None and len(items) >= total:
                    break
            else:
                raise ResponseError(f"more than {MAX_PAGES} log pages in one window")
            if not moved:
                return items
        raise TransientProviderError("log window kept changing while paging")

    def fetch_usage(self, start: datetime, end: datetime) -> Iterator[UsagePage]:
        """Yield the window's request rows (consume, error and refund logs), in pages of up to 1,000.

        The twin counter runs over the whole window, so two identical rows in one second are both
        kept and get the same keys on every re-read of any window containing that second.
        """
        items = self._read_window(start, end)
        seen: Counter[str] = Counter()
        rows: list[UsageRow] = []
        for item in reversed(items):  # oldest first
            row = self.parse_log(item, seen)
            if row is not None:
                rows.append(row)
        for offset in range(0, len(rows), 1000):
            yield UsagePage(rows=rows[offset : offset + 1000])

    def wanted_types(self) -> frozenset[int]:
        return frozenset({LOG_CONSUME, LOG_ERROR, LOG_REFUND})

    def latency_ms(self, item: dict[str, Any]) -> int | None:
        # New API's use_time is in seconds.
        return as_int(item["use_time"]) * 1000 if item.get("use_time") is not None else None

    def parse_log(self, item: dict[str, Any], seen: Counter[str]) -> UsageRow | None:
        """Return one normalised row, or None for log types that are not usage (top-up, manage, system)."""
        log_type = as_int(item.get("type"))
        if log_type not in self.wanted_types():
            return None
        created = as_int(item.get("created_at"))
        other = parse_other(item.get("other"))
        prompt = as_int(item.get("prompt_tokens"))
        completion = as_int(item.get("completion_tokens"))
        quota = as_int(item.get("quota"))
        token_name = str(item.get("token_name") or "")
        model = str(item.get("model_name") or "") or "unknown"
        request_id = str(item.get("request_id") or other.get("request_id") or "")
        timing = item.get("use_time", item.get("elapsed_time", ""))
        cache_read = as_int(other.get("cache_tokens"))
        if other.get("claude"):
            # Claude-native path: prompt excludes cache reads and writes (disjoint, like Anthropic).
            cache_write = as_int(other.get("cache_creation_tokens")) or (
                as_int(other.get("cache_creation_tokens_5m")) + as_int(other.get("cache_creation_tokens_1h"))
            )
            input_tokens = prompt + cache_read + cache_write
        else:
            cache_write = 0
            input_tokens = prompt
            cache_read = min(cache_read, prompt)
        base_key = "|".join(
            str(part)
            for part in (created, log_type, token_name, model, quota, prompt, completion, timing, request_id)
        )
        seen[base_key] += 1
        amount = quota_to_amount(quota, self.config.quota_per_unit)
        status, error_code, requests = "success", "", 1
        if log_type == LOG_ERROR:
            status = "error"
            error_code = str(
                other.get("error_code") or other.get("error_type") or other.get("status_code") or "error"
            )[:64]
        elif log_type == LOG_REFUND:
            # A refund gives quota back: negative cost, not a request.
            amount, quota, requests = -amount, -quota, 0
        return checked(
            UsageRow(
                occurred_at=from_unix(created),
                model=model,
                natural_key=f"{base_key}#{seen[base_key]}",
                input_tokens=input_tokens,
                cache_read_tokens=cache_read,
                cache_write_tokens=cache_write,
                output_tokens=completion,
                requests=requests,
                cost=amount,
                currency=self.config.currency,
                raw_quota=quota,
                status=status,
                error_code=error_code,
                latency_ms=self.latency_ms(item),
                key_external_id=token_name,
                key_name=token_name,
            )
        )

    def fetch_topups(self) -> list[TopUpReading]:
        """Return the top-up orders the gateway shows (recent ones only: some builds keep 30 days)."""
        readings: list[TopUpReading] = []
        for page in range(1, MAX_PAGES + 1):
            data = unwrap(self.http.get_json("/api/user/topup/self", {"p": page, "page_size": PAGE_SIZE}))
            batch = data.get("items") if isinstance(data, dict) else data
            if not isinstance(batch, list):
                raise ResponseError("unexpected response shape in /api/user/topup/self")
            for item in batch:
                if not isinstance(item, dict) or not item.get("trade_no"):
                    continue
                complete = as_int(item.get("complete_time"))
                status = TOPUP_STATUS.get(str(item.get("status") or "").lower(), "pending")
                readings.append(
                    TopUpReading(
                        order_ref=str(item["trade_no"])[:200],
                        amount=as_decimal(item.get("amount")),
                        status=status,
                        created_at=from_unix(item.get("create_time")),
                        credited_at=from_unix(complete) if complete and status == "credited" else None,
                        payment_method=str(item.get("payment_method") or "")[:64],
                        money_paid=as_decimal(item["money"]) if item.get("money") is not None else None,
                    )
                )
            total = as_int(data.get("total")) if isinstance(data, dict) and data.get("total") else None
            if len(batch) < PAGE_SIZE or (total is not None and page * PAGE_SIZE >= total):
                break
        return readings


class OneApiConnector(NewApiConnector):
    """One API: 0-based fixed-size pages, plain arrays, ``elapsed_time`` in ms, no error/refund logs."""

    kind: ClassVar[str] = "oneapi"
    has_topups: ClassVar[bool] = False
    one_based_pages: ClassVar[bool] = False

    def wanted_types(self) -> frozenset[int]:
        return frozenset({LOG_CONSUME})

    def latency_ms(self, item: dict[str, Any]) -> int | None:
        return as_int(item["elapsed_time"]) if item.get("elapsed_time") is not None else None
