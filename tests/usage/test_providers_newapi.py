from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from usage.providers.base import AccountConfig
from usage.providers.http import AuthError, TransientProviderError
from usage.providers.newapi import NewApiConnector, OneApiConnector, parse_other

from .loopback import Loopback, Reply, reply

START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 1, 2, tzinfo=UTC)


def newapi(lb: Loopback, *, user_id: int | None = 42, qpu: int = 500_000) -> NewApiConnector:
    config = AccountConfig("newapi", lb.url, "tok-newapi-secret", newapi_user_id=user_id, quota_per_unit=qpu)
    return NewApiConnector(config)


def oneapi(lb: Loopback) -> OneApiConnector:
    return OneApiConnector(AccountConfig("oneapi", lb.url, "tok-oneapi-secret"))


def test_balance_converts_the_worked_example_and_keeps_raw_quota(loopback: Loopback) -> None:
    loopback.route("/api/user/self", reply("newapi/user_self.json"))
    [reading] = newapi(loopback).fetch_balance()
    assert reading.remaining == Decimal("49.995818")
    assert reading.used == Decimal("20.054182")
    assert reading.total_credits == Decimal("70.05")
    assert (reading.raw_quota, reading.raw_used_quota, reading.request_count) == (24997909, 10027091, 318)
    # The body's access_token is never carried into what we keep.
    assert "qb-canary" not in repr(reading)


def test_balance_uses_the_accounts_own_quota_per_unit(loopback: Loopback) -> None:
    loopback.route("/api/user/self", reply("newapi/user_self.json"))
    [reading] = newapi(loopback, qpu=1_000_000).fetch_balance()
    assert reading.remaining == Decimal("24.997909")
    assert reading.raw_quota == 24997909


def test_requests_carry_the_token_and_new_api_user_header(loopback: Loopback) -> None:
    loopback.route("/api/user/self", reply("newapi/user_self.json"))
    newapi(loopback).fetch_balance()
    [seen] = loopback.seen
    assert seen.headers["authorization"] == "Bearer tok-newapi-secret"
    assert seen.headers["new-api-user"] == "42"


def test_no_new_api_user_header_without_a_user_id(loopback: Loopback) -> None:
    loopback.route("/api/user/self", reply("newapi/user_self.json"))
    newapi(loopback, user_id=None).fetch_balance()
    assert "new-api-user" not in loopback.seen[0].headers


def test_http_200_success_false_with_a_bad_token_is_an_auth_error(loopback: Loopback) -> None:
    loopback.route("/api/user/self", reply("newapi/bad_token.json"))
    with pytest.raises(AuthError, match="access token"):
        newapi(loopback).fetch_balance()


def test_other_success_false_is_transient_not_an_auth_problem(loopback: Loopback) -> None:
    loopback.route("/api/log/self", reply({"success": False, "message": "当前分组上游负载已饱和 请稍后再试"}))
    with pytest.raises(TransientProviderError):
        list(newapi(loopback).fetch_usage(START, END))


def _log_pages(lb: Loopback) -> None:
    pages = {
        "1": "newapi/log_page1.json",
        "2": "newapi/log_page2.json",
        "3": "newapi/log_page3.json",
    }
    lb.routes["/api/log/self"] = lambda q: reply(pages[q["p"][0]])


def test_logs_page_one_based_with_page_size_inside_a_closed_window(loopback: Loopback) -> None:
    _log_pages(loopback)
    list(newapi(loopback).fetch_usage(START, END))
    calls = loopback.calls("/api/log/self")
    assert [c.query["p"] for c in calls] == [["1"], ["2"], ["3"]]
    assert all(c.query["page_size"] == ["100"] for c in calls)
    assert calls[0].query["start_timestamp"] == [str(int(START.timestamp()))]
    assert calls[0].query["end_timestamp"] == [str(int(END.timestamp()) - 1)]


def test_log_rows_are_normalised_and_twins_both_kept(loopback: Loopback) -> None:
    _log_pages(loopback)
    rows = [row for page in newapi(loopback).fetch_usage(START, END) for row in page.rows]
    # 5 log rows: two identical consume twins, one error, one top-up (skipped), one Claude-native consume.
    assert len(rows) == 4
    twins = [r for r in rows if r.model == "gpt-4o"]
    assert len(twins) == 2
    assert twins[0].natural_key != twins[1].natural_key
    assert twins[0].natural_key.rsplit("#", 1)[0] == twins[1].natural_key.rsplit("#", 1)[0]
    first = twins[0]
    assert (first.input_tokens, first.cache_read_tokens, first.output_tokens) == (1200, 256, 480)
    assert first.cost == Decimal("0.00748")
    assert first.raw_quota == 3740
    assert first.latency_ms == 3000
    assert first.key_external_id == "prod-key"
    [error] = [r for r in rows if r.status == "error"]
    assert error.error_code == "rate_limit_exceeded"
    assert error.cost == Decimal(0)
    [claude] = [r for r in rows if r.model == "claude-sonnet-4-5"]
    # Claude-native path: prompt excludes cache reads and writes, so they are added into input.
    assert (claude.input_tokens, claude.cache_read_tokens, claude.cache_write_tokens) == (2400, 2000, 300)
    assert claude.cost == Decimal("49.995818")
    assert claude.raw_quota == 24997909


def test_natural_keys_are_stable_across_re_reads(loopback: Loopback) -> None:
    _log_pages(loopback)
    first = [r.natural_key for p in newapi(loopback).fetch_usage(START, END) for r in p.rows]
    second = [r.natural_key for p in newapi(loopback).fetch_usage(START, END) for r in p.rows]
    assert first == second


def test_a_window_whose_total_moves_while_paging_is_re_read(loopback: Loopback) -> None:
    served: list[str] = []
    totals = [2, 3, 1]  # page 1 says 2 rows, page 2 says 3 (a row arrived), then a stable 1

    def route(query: dict[str, list[str]]) -> Reply:
        served.append(query["p"][0])
        item = {"created_at": 1767225600, "type": 2, "model_name": "m", "quota": 5}
        return reply({"success": True, "data": {"items": [item], "total": totals[len(served) - 1]}})

    loopback.routes["/api/log/self"] = route
    rows = [r for p in newapi(loopback).fetch_usage(START, END) for r in p.rows]
    assert served == ["1", "2", "1"]
    assert len(rows) == 1


def test_other_is_accepted_as_string_object_or_garbage() -> None:
    assert parse_other('{"cache_tokens": 5}') == {"cache_tokens": 5}
    assert parse_other({"cache_tokens": 5}) == {"cache_tokens": 5}
    assert parse_other("not json") == {}
    assert parse_other(None) == {}


def test_one_api_pages_from_zero_without_page_size_and_reads_ms(loopback: Loopback) -> None:
    pages = {"0": "oneapi/log_p0.json", "1": "oneapi/log_p1.json"}
    loopback.routes["/api/log/self"] = lambda q: reply(pages[q["p"][0]])
    rows = [r for p in oneapi(loopback).fetch_usage(START, END) for r in p.rows]
    calls = loopback.calls("/api/log/self")
    assert [c.query["p"] for c in calls] == [["0"], ["1"]]
    assert all("page_size" not in c.query for c in calls)
    # Type 5 is a channel test in One API, not an error: skipped.
    assert [r.model for r in rows] == ["gpt-4o-mini", "gpt-3.5-turbo"]
    assert rows[1].latency_ms == 850
    assert rows[1].cost == Decimal("0.003")
    assert rows[1].natural_key.split("#")[0].endswith("20260101000140abc")


def test_top_ups_map_statuses_and_amounts_exactly(loopback: Loopback) -> None:
    loopback.route("/api/user/topup/self", reply("newapi/topups.json"))
    credited, pending = newapi(loopback).fetch_topups()
    assert (credited.order_ref, credited.amount, credited.status) == ("USR42NO0001", Decimal(20), "credited")
    assert credited.money_paid == Decimal("146.0")
    assert credited.credited_at == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert (pending.status, pending.credited_at) == ("pending", None)
