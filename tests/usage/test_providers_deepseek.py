from __future__ import annotations

from decimal import Decimal

import pytest

from usage.providers.base import AccountConfig
from usage.providers.deepseek import DeepSeekConnector
from usage.providers.http import AuthError

from .loopback import Loopback, reply


def deepseek(lb: Loopback) -> DeepSeekConnector:
    return DeepSeekConnector(AccountConfig("deepseek", lb.url, "sk-deepseek-secret"))


def test_one_reading_per_currency_from_strings_or_numbers(loopback: Loopback) -> None:
    loopback.route("/user/balance", reply("deepseek/balance.json"))
    cny, usd = deepseek(loopback).fetch_balance()
    assert (cny.currency, cny.remaining, cny.granted, cny.topped_up) == (
        "CNY",
        Decimal("110.00"),
        Decimal("10.00"),
        Decimal("100.00"),
    )
    # An older doc typed amounts as numbers: parsed exactly, never through float.
    assert (usd.currency, usd.remaining) == ("USD", Decimal("42.50"))
    assert cny.is_available is True


def test_deepseek_has_no_usage_api(loopback: Loopback) -> None:
    assert list(deepseek(loopback).fetch_usage(None, None)) == []  # type: ignore[arg-type]
    assert loopback.seen == []


def test_401_is_an_auth_error(loopback: Loopback) -> None:
    loopback.route("/user/balance", reply({"error": {"message": "Authentication Fails"}}, status=401))
    with pytest.raises(AuthError, match="Authentication Fails"):
        deepseek(loopback).fetch_balance()
