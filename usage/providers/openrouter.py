"""OpenRouter: credits (management key) or the calling key's limit, and daily activity per model.

Amounts are USD numbers; parsed as Decimal straight from the JSON text, never through float.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import ClassVar

from .base import BalanceReading, Connector, UsagePage, UsageRow
from .common import as_decimal, as_dict, as_int, checked, list_field
from .http import AuthError, ResponseError


class OpenRouterConnector(Connector):
    kind: ClassVar[str] = "openrouter"
    # Activity covers completed UTC days only, so re-read two of them.
    overlap: ClassVar[timedelta] = timedelta(hours=48)
    chunk: ClassVar[timedelta] = timedelta(days=31)

    def fetch_balance(self) -> list[BalanceReading]:
        """Return credits bought minus used; with a plain inference key (403), the key's limit instead."""
        try:
            data = as_dict(as_dict(self.http.get_json("/api/v1/credits")).get("data"))
        except AuthError as exc:
            if exc.status != 403:
                raise
            return self._key_balance()
        if "total_credits" not in data:
            raise ResponseError("unexpected response shape: no total_credits")
        total = as_decimal(data.get("total_credits"))
        used = as_decimal(data.get("total_usage"))
        return [BalanceReading(remaining=total - used, used=used, total_credits=total)]

    def _key_balance(self) -> list[BalanceReading]:
        data = as_dict(as_dict(self.http.get_json("/api/v1/key")).get("data"))
        if data.get("limit_remaining") is None:
            return []  # an unlimited key says nothing about the balance
        return [
            BalanceReading(
                remaining=as_decimal(data.get("limit_remaining")),
                used=as_decimal(data.get("usage")),
                total_credits=as_decimal(data["limit"]) if data.get("limit") is not None else None,
            )
        ]

    def fetch_usage(self, start: datetime, end: datetime) -> Iterator[UsagePage]:
        """Yield one row per (UTC day, model[, key]) in [start, end); only the last 30 days exist.

        Activity has no key column, so known keys (``key_ids``) are read one by one with
        ``api_key_hash`` and whatever the account total holds beyond them becomes an unattributed
        remainder row. ``endpoint_id`` is left out of the natural key: it is not a stable identity.
        """
        rows: list[UsageRow] = []
        attributed: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 5)
        for key_id in self.config.key_ids:
            for row in self._activity(start, end, key_id):
                rows.append(row)
                acc = attributed[(row.natural_key.split("|", 1)[0], row.model)]
                for index, value in enumerate(_measures(row)):
                    acc[index] += value
        for row in self._activity(start, end, ""):
            day = row.natural_key.split("|", 1)[0]
            rest = [
                total - done
                for total, done in zip(
                    _measures(row), attributed.get((day, row.model), [Decimal(0)] * 5), strict=True
                )
            ]
            if any(rest):
                cost, requests, prompt, completion, reasoning = rest
                rows.append(
                    checked(
                        replace(
                            row,
                            cost=cost,
                            requests=int(requests),
                            input_tokens=int(prompt),
                            output_tokens=int(completion),
                            reasoning_tokens=int(reasoning),
                        )
                    )
                )
        yield UsagePage(rows=rows)

    def _activity(self, start: datetime, end: datetime, key_id: str) -> list[UsageRow]:
        params = {"api_key_hash": key_id} if key_id else None
        body = self.http.get_json("/api/v1/activity", params)
        totals: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 5)
        for item in list_field(body):
            item = as_dict(item)
            try:
                day = datetime.strptime(str(item.get("date"))[:10], "%Y-%m-%d").replace(tzinfo=UTC)
            except ValueError as exc:
                raise ResponseError("activity row without a valid date") from exc
            if not start - timedelta(days=1) < day < end:
                continue
            model = str(item.get("model") or "") or "unknown"
            acc = totals[(day.date().isoformat(), model)]
            for index, value in enumerate(
                (
                    as_decimal(item.get("usage")),
                    Decimal(as_int(item.get("requests"))),
                    Decimal(as_int(item.get("prompt_tokens"))),
                    Decimal(as_int(item.get("completion_tokens"))),
                    Decimal(as_int(item.get("reasoning_tokens"))),
                )
            ):
                acc[index] += value
        return [
            checked(
                UsageRow(
                    occurred_at=datetime.fromisoformat(day).replace(tzinfo=UTC),
                    model=model,
                    natural_key=f"{day}|{model}|{key_id or '(rest)'}",
                    cost=cost,
                    requests=int(requests),
                    input_tokens=int(prompt),
                    output_tokens=int(completion),
                    reasoning_tokens=int(reasoning),
                    bucket_seconds=86400,
                    key_external_id=key_id,
                    key_name=key_id,
                )
            )
            for (day, model), (cost, requests, prompt, completion, reasoning) in sorted(totals.items())
        ]


def _measures(row: UsageRow) -> tuple[Decimal, ...]:
    counts = (row.requests, row.input_tokens, row.output_tokens, row.reasoning_tokens)
    return (row.cost or Decimal(0), *(Decimal(n) for n in counts))
