"""DeepSeek: balance only (``/user/balance``); DeepSeek has no usage or log API."""

from __future__ import annotations

from typing import ClassVar

from .base import BalanceReading, Connector
from .common import as_decimal, as_dict, list_field


class DeepSeekConnector(Connector):
    kind: ClassVar[str] = "deepseek"
    has_usage: ClassVar[bool] = False

    def fetch_balance(self) -> list[BalanceReading]:
        """Return one reading per currency; amounts are decimal strings in currency units (not cents)."""
        body = as_dict(self.http.get_json("/user/balance"))
        available = body.get("is_available")
        readings = []
        for info in list_field(body, "balance_infos"):
            info = as_dict(info)
            readings.append(
                BalanceReading(
                    remaining=as_decimal(info.get("total_balance")),
                    currency=str(info.get("currency") or "CNY").upper()[:3],
                    granted=as_decimal(info["granted_balance"])
                    if info.get("granted_balance") is not None
                    else None,
                    topped_up=as_decimal(info["topped_up_balance"])
                    if info.get("topped_up_balance") is not None
                    else None,
                    is_available=bool(available) if available is not None else None,
                )
            )
        return readings
