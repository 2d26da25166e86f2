"""The connector interface and the provider-neutral usage row every ingest path produces.

Connectors (one module per provider kind) turn provider responses into ``UsageRow``s and
``BalanceReading``s; ``usage.services.usage_rows_upsert`` stores rows. Push API, file import and
demo data produce the same ``UsageRow``s, so there is one write path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class UsageRow:
    """One request or provider bucket, normalised (token convention: see usage.models docstring).

    ``cost`` is the provider-reported cost in ``currency`` when the provider reports one (gateway
    quota / quota_per_unit, OpenAI and Anthropic cost reports); None means "price it from ModelPrice".
    ``natural_key`` identifies the row within its account or push source; re-reading it upserts.
    """

    occurred_at: datetime
    model: str
    natural_key: str
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    requests: int = 1
    bucket_seconds: int = 0
    cost: Decimal | None = None
    currency: str = "USD"
    raw_quota: int | None = None
    status: str = "success"
    error_code: str = ""
    latency_ms: int | None = None
    key_external_id: str = ""
    key_name: str = ""
    project_slug: str = ""


@dataclass(frozen=True)
class BalanceReading:
    """A balance as the provider reports it, converted to currency units (raw quota kept for gateways)."""

    remaining: Decimal
    currency: str = "USD"
    used: Decimal | None = None
    granted: Decimal | None = None
    topped_up: Decimal | None = None
    total_credits: Decimal | None = None
    raw_quota: int | None = None
    raw_used_quota: int | None = None
    request_count: int | None = None
    is_available: bool | None = None


@dataclass(frozen=True)
class UsagePage:
    """Rows from one provider page, plus whatever the connector needs to fetch the next one."""

    rows: list[UsageRow] = field(default_factory=list)
    next_cursor: str | None = None
