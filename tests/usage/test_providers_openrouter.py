from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from usage.providers.base import AccountConfig
from usage.providers.openrouter import OpenRouterConnector

from .loopback import Loopback, reply

START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 1, 3, tzinfo=UTC)


def openrouter(lb: Loopback, key_ids: tuple[str, ...] = ()) -> OpenRouterConnector:
    return OpenRouterConnector(AccountConfig("openrouter", lb.url, "sk-or-secret", key_ids=key_ids))


def test_credits_give_remaining_as_bought_minus_used(loopback: Loopback) -> None:
    loopback.route("/api/v1/credits", reply("openrouter/credits.json"))
    [reading] = openrouter(loopback).fetch_balance()
    assert (reading.remaining, reading.used, reading.total_credits) == (
        Decimal("74.75"),
        Decimal("25.75"),
        Decimal("100.5"),
    )


def test_an_inference_key_falls_back_to_its_own_limit(loopback: Loopback) -> None:
    loopback.route(
        "/api/v1/credits", reply({"error": {"code": 403, "message": "management key"}}, status=403)
    )
    loopback.route("/api/v1/key", reply("openrouter/key.json"))
    [reading] = openrouter(loopback).fetch_balance()
    assert (reading.remaining, reading.used, reading.total_credits) == (
        Decimal("37.25"),
        Decimal("12.75"),
        Decimal("50"),
    )


def test_activity_rows_carry_provider_cost_exactly(loopback: Loopback) -> None:
    loopback.route("/api/v1/activity", reply("openrouter/activity.json"))
    rows = next(iter(openrouter(loopback).fetch_usage(START, END))).rows
    assert [(r.model, r.cost, r.requests, r.reasoning_tokens) for r in rows] == [
        ("openai/gpt-4.1", Decimal("0.015"), 5, 25),
        ("deepseek/deepseek-chat", Decimal("0.0000123"), 1, 0),
    ]
    assert rows[0].bucket_seconds == 86400


def test_known_keys_are_attributed_and_the_rest_stays_unassigned(loopback: Loopback) -> None:
    one_key = {"data": [{"date": "2026-01-01", "model": "openai/gpt-4.1", "usage": 0.01, "requests": 3}]}
    loopback.routes["/api/v1/activity"] = lambda q: reply(
        one_key if q.get("api_key_hash") == ["abc123"] else "openrouter/activity.json"
    )
    rows = next(iter(openrouter(loopback, ("abc123",)).fetch_usage(START, END))).rows
    gpt = [(r.key_external_id, r.cost, r.requests) for r in rows if r.model == "openai/gpt-4.1"]
    assert gpt == [("abc123", Decimal("0.01"), 3), ("", Decimal("0.005"), 2)]
