from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from usage.providers.anthropic import AnthropicConnector
from usage.providers.base import AccountConfig

from .loopback import Loopback, reply

START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 1, 2, tzinfo=UTC)


def anthropic(lb: Loopback) -> AnthropicConnector:
    return AnthropicConnector(AccountConfig("anthropic", lb.url, "sk-ant-admin-secret"))


def test_disjoint_token_classes_are_added_into_input(loopback: Loopback) -> None:
    loopback.route("/v1/organizations/usage_report/messages", reply("anthropic/usage.json"))
    [row] = [r for page in anthropic(loopback).fetch_usage(START, END) for r in page.rows]
    assert row.input_tokens == 15200 + 90000 + 3000 + 500
    assert (row.cache_read_tokens, row.cache_write_tokens, row.output_tokens) == (90000, 3500, 4100)
    assert row.occurred_at == START
    assert row.bucket_seconds == 3600
    assert row.key_external_id == "apikey_01Ab"


def test_requests_use_admin_key_headers_and_bracket_group_by(loopback: Loopback) -> None:
    loopback.route("/v1/organizations/usage_report/messages", reply("anthropic/usage.json"))
    list(anthropic(loopback).fetch_usage(START, END))
    [seen] = loopback.seen
    assert seen.headers["x-api-key"] == "sk-ant-admin-secret"
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in seen.headers
    assert seen.query["group_by[]"] == ["api_key_id", "workspace_id", "model"]
    assert seen.query["starting_at"] == ["2026-01-01T00:00:00Z"]


def test_cost_report_cents_become_dollars_exactly(loopback: Loopback) -> None:
    loopback.route("/v1/organizations/cost_report", reply("anthropic/cost_report.json"))
    lines = anthropic(loopback).fetch_costs(START, END)
    assert [(line.day, line.model, line.amount) for line in lines] == [
        (date(2026, 1, 1), "claude-sonnet-4-5", Decimal("12.4457")),
        (date(2026, 1, 1), "web_search", Decimal("0.01")),
    ]
