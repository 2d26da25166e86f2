"""The connector interface and the provider-neutral usage row every ingest path produces.

Connectors (one module per provider kind) turn provider responses into ``UsageRow``s and
``BalanceReading``s; ``usage.services.usage_rows_upsert`` stores rows. Push API, file import and
demo data produce the same ``UsageRow``s, so there is one write path.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import ClassVar

from .http import ProviderHTTP


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


@dataclass(frozen=True)
class CostLine:
    """Billed cost for one UTC day and model, as a provider's cost report states it (the truth)."""

    day: date
    model: str
    amount: Decimal
    currency: str = "USD"


@dataclass(frozen=True)
class KeyInfo:
    """A key or token the provider lists, with the project it belongs to there (if any)."""

    external_id: str
    name: str
    redacted_hint: str = ""
    provider_project: str = ""


@dataclass(frozen=True)
class TopUpReading:
    """One top-up order from a gateway's history; ``amount`` in the account currency."""

    order_ref: str
    amount: Decimal
    status: str
    created_at: datetime
    credited_at: datetime | None = None
    payment_method: str = ""
    money_paid: Decimal | None = None


@dataclass(frozen=True)
class AccountConfig:
    """What a connector needs to know about an account. ``credential`` is plaintext: never log or repr it."""

    kind: str
    base_url: str
    credential: str = field(repr=False)
    newapi_user_id: int | None = None
    quota_per_unit: int = 500_000
    currency: str = "USD"
    # Known key ids (OpenRouter key hashes): usage is read per key to attribute it.
    key_ids: tuple[str, ...] = ()


class Connector(ABC):
    """One provider kind's client and parsers. Every method raises ``ProviderError`` subclasses only.

    ``fetch_usage`` yields pages for [start, end) (UTC); ``fetch_costs`` returns billed cost lines for
    the UTC days touching the window where the provider has a cost report (else an empty list).
    """

    kind: ClassVar[str]
    # How far back each run re-reads, so late and revised provider data is picked up.
    overlap: ClassVar[timedelta] = timedelta(hours=6)
    # Longest window fetched (and committed with the cursor) in one step.
    chunk: ClassVar[timedelta] = timedelta(days=1)
    has_usage: ClassVar[bool] = True
    has_balance: ClassVar[bool] = True
    has_costs: ClassVar[bool] = False
    has_topups: ClassVar[bool] = False

    def __init__(self, config: AccountConfig, http: ProviderHTTP | None = None) -> None:
        self.config = config
        self.http = http or ProviderHTTP(config.base_url, secret=config.credential, headers=self.headers())

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.credential}", "Accept": "application/json"}

    def close(self) -> None:
        self.http.close()

    def fetch_balance(self) -> list[BalanceReading]:
        return []

    def fetch_usage(self, start: datetime, end: datetime) -> Iterator[UsagePage]:
        return iter(())

    def fetch_costs(self, start: datetime, end: datetime) -> list[CostLine]:
        return []

    def list_keys(self) -> list[KeyInfo]:
        return []

    def fetch_topups(self) -> list[TopUpReading]:
        return []
