from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from usage.providers.base import AccountConfig
from usage.providers.http import AuthError
from usage.providers.openai import OpenAIConnector

from .loopback import Loopback, reply

START = datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
END = datetime(2026, 1, 1, 3, tzinfo=UTC)


def openai(lb: Loopback) -> OpenAIConnector:
    return OpenAIConnector(AccountConfig("openai", lb.url, "sk-admin-secret-value"))


def test_usage_follows_next_page_and_groups_by_project_key_and_model(loopback: Loopback) -> None:
    loopback.routes["/v1/organization/usage/completions"] = lambda q: reply(
        "openai/usage_page2.json" if q.get("page") else "openai/usage_page1.json"
    )
    rows = [r for page in openai(loopback).fetch_usage(START, END) for r in page.rows]
    first, second = loopback.calls("/v1/organization/usage/completions")
    assert first.query["group_by"] == ["project_id", "api_key_id", "model"]
    assert first.query["bucket_width"] == ["1h"]
    # Hours are aligned: the unaligned window start is floored to 00:00.
    assert first.query["start_time"] == [str(int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()))]
    assert second.query["page"] == ["page_AAAAAGdGxdE"]
    assert first.headers["authorization"] == "Bearer sk-admin-secret-value"
    assert len(rows) == 3


def test_input_tokens_already_include_cached_tokens(loopback: Loopback) -> None:
    loopback.route("/v1/organization/usage/completions", reply("openai/usage_page2.json"))
    [row] = [r for page in openai(loopback).fetch_usage(START, END) for r in page.rows]
    assert (row.input_tokens, row.cache_read_tokens, row.output_tokens) == (80000, 20000, 4000)
    assert row.requests == 20
    assert row.bucket_seconds == 3600
    assert row.cost is None  # priced from ModelPrice at upsert
    assert row.key_external_id == "key_xyz"


def test_missing_optional_fields_default_to_zero(loopback: Loopback) -> None:
    loopback.routes["/v1/organization/usage/completions"] = lambda q: reply(
        "openai/usage_page2.json" if q.get("page") else "openai/usage_page1.json"
    )
    rows = next(iter(openai(loopback).fetch_usage(START, END))).rows
    mystery = next(r for r in rows if r.model == "mystery-model-9")
    assert (mystery.cache_read_tokens, mystery.cache_write_tokens) == (0, 0)


def test_costs_are_dollars_summed_per_day_and_model(loopback: Loopback) -> None:
    loopback.route("/v1/organization/costs", reply("openai/costs.json"))
    lines = openai(loopback).fetch_costs(START, END)
    assert [(line.day, line.model, line.amount, line.currency) for line in lines] == [
        (date(2026, 1, 1), "gpt-4.1-mini", Decimal("0.0756"), "USD"),
        (date(2026, 1, 1), "gpt-4o", Decimal("0.2"), "USD"),
    ]
    assert loopback.seen[0].query["group_by"] == ["line_item"]


def test_keys_are_listed_per_project(loopback: Loopback) -> None:
    loopback.route("/v1/organization/projects", reply("openai/projects.json"))
    loopback.route("/v1/organization/projects/proj_abc/api_keys", reply("openai/project_keys.json"))
    [key] = openai(loopback).list_keys()
    assert (key.external_id, key.name, key.redacted_hint, key.provider_project) == (
        "key_xyz",
        "ci",
        "sk-...abcd",
        "proj_abc",
    )


def test_401_raises_auth_error_without_the_key(loopback: Loopback) -> None:
    loopback.route(
        "/v1/organization/costs",
        reply({"error": {"message": "Incorrect API key provided: sk-admin-secret-value."}}, status=401),
    )
    with pytest.raises(AuthError) as caught:
        openai(loopback).fetch_costs(START, END)
    assert "sk-admin-secret-value" not in str(caught.value)
    assert len(loopback.seen) == 1  # not retried
