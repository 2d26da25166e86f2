"""The provider simulator: deterministic traffic, provider-exact shapes and paging, faults, and an honest oracle.

Every endpoint test pages through a started simulator with plain httpx, the way a connector would,
and compares what came over the wire with ``expected_usage`` / ``expected_quota``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from usage.simulator import DEFAULT_WORLD, ProviderSimulator, SimClock, events_for, generator
from usage.simulator.generator import newapi_quota, oneapi_quota

NOW = datetime(2026, 11, 20, 12, 30, 15, tzinfo=UTC)
ANCHOR = NOW.date()
DAY0 = datetime(2026, 11, 17, tzinfo=UTC)  # a Tuesday, three whole days before NOW
NEWAPI_HEADERS = {"Authorization": "Bearer sim-reseller-secret", "New-Api-User": "42"}
ONEAPI_HEADERS = {"Authorization": "sim-legacy-gateway-secret"}
OPENAI_HEADERS = {"Authorization": "Bearer sim-openai-secret"}
ANTHROPIC_HEADERS = {"x-api-key": "sim-anthropic-secret", "anthropic-version": "2023-06-01"}
OPENROUTER_HEADERS = {"Authorization": "Bearer sim-openrouter-secret"}


def _json(response: httpx.Response) -> Any:
    # Money arrives as JSON numbers: read them as Decimal, as connectors must.
    return json.loads(response.content, parse_float=Decimal)


def _ts(value: datetime) -> int:
    return int(value.timestamp())


@pytest.fixture
def sim() -> Iterator[ProviderSimulator]:
    simulator = ProviderSimulator(DEFAULT_WORLD, seed=7, clock=SimClock(NOW))
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http:
        yield http


# --- generator ------------------------------------------------------------------------------------


def test_same_hour_yields_same_events_whatever_window_asks() -> None:
    wide = events_for("reseller", DAY0 - timedelta(days=2), DAY0 + timedelta(days=1), anchor=ANCHOR)
    narrow = events_for(
        "reseller", DAY0 + timedelta(hours=5, minutes=17), DAY0 + timedelta(hours=9), anchor=ANCHOR
    )
    assert narrow == [e for e in wide if narrow[0].ts <= e.ts and e.occurred_at < DAY0 + timedelta(hours=9)]
    assert all(DAY0 + timedelta(hours=5, minutes=17) <= e.occurred_at for e in narrow)
    generator.hour_events.cache_clear()
    again = events_for(
        "reseller", DAY0 + timedelta(hours=5, minutes=17), DAY0 + timedelta(hours=9), anchor=ANCHOR
    )
    assert again == narrow
    other_seed = events_for("reseller", DAY0, DAY0 + timedelta(hours=1), anchor=ANCHOR, seed=8)
    assert other_seed != events_for("reseller", DAY0, DAY0 + timedelta(hours=1), anchor=ANCHOR)


def test_money_is_decimal_and_gateway_cost_is_quota_over_quota_per_unit() -> None:
    for slug in ("reseller", "legacy-gateway", "openai", "anthropic", "deepseek", "openrouter"):
        for event in events_for(slug, DAY0, DAY0 + timedelta(hours=3), anchor=ANCHOR):
            assert isinstance(event.cost, Decimal)
            if slug in ("reseller", "legacy-gateway"):
                assert isinstance(event.quota, int)
                assert event.cost == Decimal(event.quota) / 500000
            else:
                assert event.quota is None
            assert 0 <= event.cache_read_tokens + event.cache_write_tokens <= event.input_tokens
            assert 0 <= event.reasoning_tokens <= event.output_tokens


def test_generated_gateway_rows_carry_the_formula_quota() -> None:
    for slug, formula in (("reseller", newapi_quota), ("legacy-gateway", None)):
        for event in events_for(slug, DAY0, DAY0 + timedelta(hours=6), anchor=ANCHOR):
            if event.status != "success":
                continue
            rates = generator.model_rates(DEFAULT_WORLD, slug, event.model)
            if formula is None:
                assert event.quota == oneapi_quota(rates, event.input_tokens, event.output_tokens)
            else:
                assert event.quota == formula(
                    rates, event.input_tokens, event.cache_read_tokens, event.output_tokens
                )


def test_quota_formulas_follow_providers_md_1_9() -> None:
    rates = generator.model_rates(DEFAULT_WORLD, "reseller", "gpt-4o")  # ratio 1.25, completion 4, cache 0.5
    # (1000 - 256 + 256*0.5 + 480*4) * 1.25 = (744 + 128 + 1920) * 1.25 = 3490
    assert newapi_quota(rates, 1000, 256, 480) == 3490
    mini = generator.model_rates(DEFAULT_WORLD, "reseller", "gpt-4o-mini")  # ratio 0.075, completion 4
    assert newapi_quota(mini, 10, 0, 1) == 1  # 1.05 rounds to 1
    assert newapi_quota(mini, 14, 0, 3) == 2  # 1.95 rounds to 2
    assert newapi_quota(mini, 0, 0, 0) == 0
    legacy = generator.model_rates(
        DEFAULT_WORLD, "legacy-gateway", "gpt-3.5-turbo"
    )  # ratio 0.25, completion 3
    assert oneapi_quota(legacy, 1001, 0) == 251  # ceil(250.25)
    assert oneapi_quota(legacy, 1, 0) == 1


def test_ninety_days_of_the_whole_world_is_fast_and_large() -> None:
    generator.hour_events.cache_clear()
    # CPU time, not wall time: a busy CI machine must not fail this.
    started = time.process_time()
    rows = sum(
        len(events_for(account.slug, NOW - timedelta(days=90), NOW, anchor=ANCHOR))
        for account in DEFAULT_WORLD.accounts
    )
    elapsed = time.process_time() - started
    assert rows >= 200_000
    assert elapsed < 10, f"generating 90 days took {elapsed:.1f} s"


def test_rhythm_weekdays_busier_than_weekends_and_office_hours_busier_than_nights() -> None:
    events = events_for("reseller", NOW - timedelta(days=28), NOW - timedelta(days=1), anchor=ANCHOR)
    per_day: dict[date, int] = defaultdict(int)
    per_hour: dict[int, int] = defaultdict(int)
    for event in events:
        if event.status == "success":
            per_day[event.occurred_at.date()] += 1
            per_hour[event.occurred_at.hour] += 1
    weekday = [n for d, n in per_day.items() if d.weekday() < 5]
    weekend = [n for d, n in per_day.items() if d.weekday() >= 5]
    assert sum(weekday) / len(weekday) > 1.6 * sum(weekend) / len(weekend)
    assert 1500 < sum(weekday) / len(weekday) < 3500  # about 2,000 requests a weekday
    assert per_hour[3] > 2 * per_hour[12]  # 11:00 in UTC+8 vs 20:00 UTC+8 lull
    assert per_hour[16] > 2 * per_hour[12]  # US morning


def test_retry_storm_ten_days_ago_from_one_key() -> None:
    storm_day = datetime.combine(ANCHOR - timedelta(days=10), datetime.min.time(), UTC)
    events = events_for("reseller", storm_day, storm_day + timedelta(days=1), anchor=ANCHOR)
    errors = [e for e in events if e.status == "error"]
    assert len(errors) >= 1000
    assert {e.key_external_id for e in errors} == {"batch-worker"}
    assert {e.error_code for e in errors} == {"upstream_rate_limited", "token_quota_exhausted"}
    assert all(e.quota == 0 and e.cost == 0 and e.input_tokens == 0 for e in errors)
    quiet = events_for(
        "reseller", storm_day - timedelta(days=7), storm_day - timedelta(days=6), anchor=ANCHOR
    )
    assert not any(e.status == "error" for e in quiet)


def test_cache_hit_rate_drops_around_thirty_days_ago() -> None:
    def hit_share(days_ago: int) -> Decimal:
        start = NOW - timedelta(days=days_ago)
        events = events_for("openai", start, start + timedelta(days=5), anchor=ANCHOR)
        return Decimal(sum(e.cache_read_tokens for e in events)) / sum(e.input_tokens for e in events)

    assert hit_share(45) > 2 * hit_share(20)


def test_topups_keep_prepaid_balances_positive() -> None:
    sim = ProviderSimulator(clock=NOW)
    for slug in ("reseller", "legacy-gateway", "deepseek", "openrouter"):
        assert sim.topups(slug), slug
        assert sim.balance(slug).remaining > 0
    assert sim.topups("openai") == []


# --- New API --------------------------------------------------------------------------------------


def _newapi_pages(client: httpx.Client, base: str, **params: Any) -> Iterator[dict[str, Any]]:
    page = 1
    while True:
        body = _json(
            client.get(
                f"{base}/api/log/self", headers=NEWAPI_HEADERS, params={**params, "p": page, "page_size": 100}
            )
        )
        assert body["success"] is True
        yield body["data"]
        if page * 100 >= body["data"]["total"]:
            return
        page += 1


def test_newapi_log_paging_matches_the_oracle_and_stat(sim: ProviderSimulator, client: httpx.Client) -> None:
    base = sim.account_url("reseller")
    start, end = DAY0, DAY0 + timedelta(days=1)
    pages = list(_newapi_pages(client, base, type=2, start_timestamp=_ts(start), end_timestamp=_ts(end) - 1))
    items = [item for page in pages for item in page["items"]]
    assert len(items) == pages[0]["total"] > 1000
    assert all(page["page_size"] == 100 for page in pages)
    assert [i["created_at"] for i in items] == sorted((i["created_at"] for i in items), reverse=True)
    assert all(0 <= i["id"] < 1024 and i["type"] == 2 and i["user_id"] == 42 for i in items)
    other = json.loads(items[0]["other"])  # a JSON-encoded string, as New API ≤2025 sends it
    assert {
        "model_ratio",
        "completion_ratio",
        "group_ratio",
        "cache_tokens",
        "cache_ratio",
        "model_price",
    } <= set(other)

    stat = _json(
        client.get(
            f"{base}/api/log/self/stat",
            headers=NEWAPI_HEADERS,
            params={"type": 0, "start_timestamp": _ts(start), "end_timestamp": _ts(end) - 1},
        )
    )
    assert (
        stat["data"]["quota"] == sum(i["quota"] for i in items) == sim.expected_quota("reseller", start, end)
    )

    seen: dict[tuple[date, str], list[Any]] = defaultdict(lambda: [0, 0, 0, 0])
    for item in items:
        acc = seen[(datetime.fromtimestamp(item["created_at"], UTC).date(), item["model_name"])]
        acc[0] += 1
        acc[1] += item["prompt_tokens"]
        acc[2] += item["completion_tokens"]
        acc[3] += item["quota"]
    expected = sim.expected_usage("reseller", start, end)
    assert set(seen) == set(expected)
    for key, (requests, prompt, completion, quota) in seen.items():
        assert (requests, prompt, completion, quota) == (
            expected[key].requests,
            expected[key].input_tokens,
            expected[key].output_tokens,
            expected[key].quota,
        )
        assert expected[key].cost == Decimal(quota) / 500000


def test_newapi_all_types_include_storm_errors_and_topups(
    sim: ProviderSimulator, client: httpx.Client
) -> None:
    base = sim.account_url("reseller")
    storm_day = datetime.combine(ANCHOR - timedelta(days=10), datetime.min.time(), UTC)
    items = [
        i
        for p in _newapi_pages(
            client, base, start_timestamp=_ts(storm_day), end_timestamp=_ts(storm_day + timedelta(days=1)) - 1
        )
        for i in p["items"]
    ]
    errors = [i for i in items if i["type"] == 5]
    assert len(errors) == sum(
        t.errors for t in sim.expected_usage("reseller", storm_day, storm_day + timedelta(days=1)).values()
    )
    assert errors and all(i["quota"] == 0 and i["token_name"] == "batch-worker" for i in errors)
    topup = next(t for t in sim.topups("reseller") if t.status == "success")
    around = [
        i
        for p in _newapi_pages(client, base, type=1, start_timestamp=topup.ts - 5, end_timestamp=topup.ts + 5)
        for i in p["items"]
    ]
    assert [(i["type"], i["quota"], i["created_at"]) for i in around] == [(1, 0, topup.ts)]
    assert "充值金额" in around[0]["content"]


def test_newapi_hourly_quota_data_matches_the_log(sim: ProviderSimulator, client: httpx.Client) -> None:
    url = sim.account_url("reseller") + "/api/data/self"
    start, end = DAY0, DAY0 + timedelta(days=1)
    rows = client.get(
        url, headers=NEWAPI_HEADERS, params={"start_timestamp": _ts(start), "end_timestamp": _ts(end) - 1}
    ).json()["data"]
    assert all(r["created_at"] % 3600 == 0 for r in rows)
    assert sum(r["quota"] for r in rows) == sim.expected_quota("reseller", start, end)
    assert sum(r["count"] for r in rows) == sum(
        t.requests for t in sim.expected_usage("reseller", start, end).values()
    )
    too_long = client.get(
        url,
        headers=NEWAPI_HEADERS,
        params={"start_timestamp": _ts(start) - 31 * 86400, "end_timestamp": _ts(end)},
    ).json()
    assert too_long["success"] is False


def test_newapi_slim_variant_embeds_other_as_an_object(sim: ProviderSimulator, client: httpx.Client) -> None:
    sim.use_variant("reseller", "slim")
    params = {
        "p": 1,
        "page_size": 5,
        "type": 2,
        "start_timestamp": _ts(DAY0),
        "end_timestamp": _ts(DAY0) + 3600,
    }
    items = client.get(
        sim.account_url("reseller") + "/api/log/self", headers=NEWAPI_HEADERS, params=params
    ).json()
    item = items["data"]["items"][0]
    assert isinstance(item["other"], dict) and "model_ratio" in item["other"]
    assert not {"username", "group", "token_id", "channel", "ip"} & set(item)


def test_newapi_model_name_filter_is_sql_like(sim: ProviderSimulator, client: httpx.Client) -> None:
    base = sim.account_url("reseller")
    window = {"start_timestamp": _ts(DAY0), "end_timestamp": _ts(DAY0 + timedelta(hours=6))}
    items = [i for p in _newapi_pages(client, base, model_name="gpt-4%mini", **window) for i in p["items"]]
    assert {i["model_name"] for i in items} == {"gpt-4o-mini", "gpt-4.1-mini"}


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"New-Api-User": "42"}, 401, "未提供 access token"),
        ({"Authorization": "wrong", "New-Api-User": "42"}, 200, "access token 无效"),
        ({"Authorization": "sim-reseller-secret"}, 401, "未提供 New-Api-User"),
        ({"Authorization": "sim-reseller-secret", "New-Api-User": "abc"}, 401, "格式错误"),
        ({"Authorization": "sim-reseller-secret", "New-Api-User": "43"}, 401, "不匹配"),
    ],
)
def test_newapi_auth_failures(
    sim: ProviderSimulator, client: httpx.Client, headers: dict[str, str], status: int, message: str
) -> None:
    response = client.get(sim.account_url("reseller") + "/api/user/self", headers=headers)
    assert response.status_code == status
    assert response.json()["success"] is False
    assert message in response.json()["message"]


def test_newapi_token_with_or_without_bearer_and_public_status(
    sim: ProviderSimulator, client: httpx.Client
) -> None:
    base = sim.account_url("reseller")
    plain = client.get(
        base + "/api/user/self", headers={"Authorization": "sim-reseller-secret", "New-Api-User": "42"}
    )
    bearer = client.get(base + "/api/user/self", headers=NEWAPI_HEADERS)
    assert plain.json() == bearer.json()
    data = bearer.json()["data"]
    assert (
        data["id"] == 42 and data["access_token"] == "sim-reseller-secret"
    )  # New API 2025 leaks it; scrub it
    state = sim.balance("reseller")
    assert (data["quota"], data["used_quota"], data["request_count"]) == (
        state.quota,
        state.used_quota,
        state.request_count,
    )
    status = client.get(base + "/api/status").json()["data"]
    assert status["quota_per_unit"] == 500000


def test_newapi_topups_last_30_days_newest_first(sim: ProviderSimulator, client: httpx.Client) -> None:
    body = client.get(
        sim.account_url("reseller") + "/api/user/topup/self",
        headers=NEWAPI_HEADERS,
        params={"p": 1, "page_size": 10},
    ).json()["data"]
    expected = [t for t in sim.topups("reseller") if t.ts >= _ts(NOW) - 30 * 86400]
    assert body["total"] == len(expected) >= 1
    assert [i["create_time"] for i in body["items"]] == sorted((t.ts for t in expected), reverse=True)
    assert {
        "id",
        "user_id",
        "amount",
        "money",
        "trade_no",
        "payment_method",
        "create_time",
        "complete_time",
        "status",
    } <= set(body["items"][0])


def test_balance_falls_with_usage_and_jumps_on_topup() -> None:
    topup = next(t for t in generator.topups_for("reseller", NOW, anchor=ANCHOR) if t.status == "success")
    clock = SimClock(topup.occurred_at - timedelta(hours=2))
    sim = ProviderSimulator(clock=clock, anchor=ANCHOR)
    before = sim.balance("reseller")
    clock.advance(timedelta(hours=1))
    later = sim.balance("reseller")
    spent = sim.expected_quota(
        "reseller",
        topup.occurred_at - timedelta(hours=2, seconds=-1),
        topup.occurred_at - timedelta(hours=1, seconds=-1),
    )
    assert before.quota is not None and later.quota is not None
    assert later.quota == before.quota - spent < before.quota
    clock.advance(timedelta(hours=2))
    after = sim.balance("reseller")
    assert after.quota is not None
    assert after.quota > later.quota
    assert after.quota - later.quota == topup.quota - sim.expected_quota(
        "reseller",
        topup.occurred_at - timedelta(hours=1, seconds=-1),
        topup.occurred_at + timedelta(hours=1, seconds=1),
    )


# --- One API --------------------------------------------------------------------------------------


def test_oneapi_paging_is_zero_based_ten_a_page_plain_array(
    sim: ProviderSimulator, client: httpx.Client
) -> None:
    base = sim.account_url("legacy-gateway")
    start, end = DAY0, DAY0 + timedelta(days=1)
    items: list[dict[str, Any]] = []
    page = 0
    while True:
        body = _json(
            client.get(
                base + "/api/log/self",
                headers={"Authorization": "Bearer sim-legacy-gateway-secret"},
                params={
                    "p": page,
                    "type": 2,
                    "start_timestamp": _ts(start),
                    "end_timestamp": _ts(end) - 1,
                    "page_size": 100,
                },
            )
        )
        assert isinstance(body["data"], list)
        assert len(body["data"]) <= 10  # fixed page size: page_size is ignored
        items += body["data"]
        if len(body["data"]) < 10:
            break
        page += 1
    assert len(items) > 100
    assert all(i["id"] == 0 and "other" not in i and "group" not in i for i in items)
    assert all(isinstance(i["elapsed_time"], int) and i["elapsed_time"] > 100 for i in items)  # milliseconds
    stat = client.get(
        base + "/api/log/self/stat",
        headers=ONEAPI_HEADERS,
        params={"start_timestamp": _ts(start), "end_timestamp": _ts(end) - 1},
    ).json()
    assert stat == {"success": True, "message": "", "data": {"quota": sum(i["quota"] for i in items)}}
    assert stat["data"]["quota"] == sim.expected_quota("legacy-gateway", start, end)
    expected = sim.expected_usage("legacy-gateway", start, end)
    assert sum(t.requests for t in expected.values()) == len(items)
    assert sum(t.cost for t in expected.values()) == Decimal(stat["data"]["quota"]) / 500000


def test_oneapi_bad_token_is_http_200_success_false(sim: ProviderSimulator, client: httpx.Client) -> None:
    response = client.get(
        sim.account_url("legacy-gateway") + "/api/user/self", headers={"Authorization": "nope"}
    )
    assert response.status_code == 200
    assert response.json()["success"] is False
    ok = client.get(sim.account_url("legacy-gateway") + "/api/user/self", headers=ONEAPI_HEADERS).json()[
        "data"
    ]
    assert "access_token" not in ok and ok["quota"] == sim.balance("legacy-gateway").quota


# --- OpenAI ---------------------------------------------------------------------------------------


def _openai_pages(client: httpx.Client, url: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    buckets = []
    page = None
    while True:
        body = _json(
            client.get(url, headers=OPENAI_HEADERS, params={**params, **({"page": page} if page else {})})
        )
        assert body["object"] == "page"
        buckets += body["data"]
        if not body["has_more"]:
            assert body["next_page"] is None
            return buckets
        page = body["next_page"]


def test_openai_usage_hourly_paging_matches_oracle(sim: ProviderSimulator, client: httpx.Client) -> None:
    start, end = DAY0, DAY0 + timedelta(days=2)
    buckets = _openai_pages(
        client,
        sim.account_url("openai") + "/v1/organization/usage/completions",
        {
            "start_time": _ts(start),
            "end_time": _ts(end),
            "bucket_width": "1h",
            "limit": 24,
            "group_by": ["model", "api_key_id"],
        },
    )
    assert len(buckets) == 48
    assert [b["start_time"] for b in buckets] == list(range(_ts(start), _ts(end), 3600))
    seen: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for bucket in buckets:
        for result in bucket["results"]:
            assert result["object"] == "organization.usage.completions.result"
            assert result["project_id"] is None and result["api_key_id"].startswith("key_")
            assert result["input_uncached_tokens"] == result["input_tokens"] - result["input_cached_tokens"]
            acc = seen[(datetime.fromtimestamp(bucket["start_time"], UTC).date(), result["model"])]
            acc[0] += result["num_model_requests"]
            acc[1] += result["input_tokens"]
            acc[2] += result["output_tokens"]
            acc[3] += result["input_cached_tokens"]
    expected = sim.expected_usage("openai", start, end)
    assert {k: tuple(v) for k, v in seen.items()} == {
        k: (t.requests, t.input_tokens, t.output_tokens, t.cache_read_tokens) for k, t in expected.items()
    }


def test_openai_costs_by_line_item_add_up_to_oracle_cost(
    sim: ProviderSimulator, client: httpx.Client
) -> None:
    start, end = DAY0 - timedelta(days=10), DAY0 + timedelta(days=2)
    buckets = _openai_pages(
        client,
        sim.account_url("openai") + "/v1/organization/costs",
        {
            "start_time": _ts(start),
            "end_time": _ts(end),
            "group_by": ["line_item", "project_id"],
            "limit": 5,
        },
    )
    assert len(buckets) == 12
    cost: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
    for bucket in buckets:
        assert bucket["end_time"] - bucket["start_time"] == 86400
        for result in bucket["results"]:
            assert result["amount"]["currency"] == "usd" and result["quantity_unit"] == "tokens"
            model = result["line_item"].split(", ")[0]
            cost[(datetime.fromtimestamp(bucket["start_time"], UTC).date(), model)] += result["amount"][
                "value"
            ]
    expected = sim.expected_usage("openai", start, end)
    assert dict(cost) == {k: t.cost for k, t in expected.items()}


def test_openai_daily_buckets_first_unaligned_then_aligned_and_empty_in_future(
    sim: ProviderSimulator, client: httpx.Client
) -> None:
    start = NOW - timedelta(days=1, hours=5)
    buckets = _openai_pages(
        client,
        sim.account_url("openai") + "/v1/organization/usage/completions",
        {"start_time": _ts(start), "bucket_width": "1d"},
    )
    assert buckets[0]["start_time"] == _ts(start)
    assert all(b["start_time"] % 86400 == 0 for b in buckets[1:])
    assert buckets[-1]["start_time"] <= _ts(NOW) < buckets[-1]["end_time"]


def test_openai_projects_and_keys_listing(sim: ProviderSimulator, client: httpx.Client) -> None:
    base = sim.account_url("openai") + "/v1/organization/projects"
    first = client.get(base, headers=OPENAI_HEADERS, params={"limit": 2}).json()
    assert first["object"] == "list" and first["has_more"] is True and len(first["data"]) == 2
    rest = client.get(base, headers=OPENAI_HEADERS, params={"limit": 100, "after": first["last_id"]}).json()
    ids = [p["id"] for p in first["data"] + rest["data"]]
    assert "proj_Z9oLdArchived" not in ids and "proj_D0fLtDefault" in ids
    keys = client.get(f"{base}/proj_Kc7QwZ1aChat/api_keys", headers=OPENAI_HEADERS).json()
    assert {k["id"] for k in keys["data"]} == {"key_a1B2c3D4e5F6g7H8", "key_b2C3d4E5f6G7h8I9"}
    assert all(k["object"] == "organization.project.api_key" for k in keys["data"])
    denied = client.get(base, headers={"Authorization": "Bearer sk-admin-wrong"})
    assert denied.status_code == 401 and denied.json()["error"]["type"] == "invalid_request_error"


def test_openai_requires_start_time_and_bounds_limit(sim: ProviderSimulator, client: httpx.Client) -> None:
    url = sim.account_url("openai") + "/v1/organization/usage/completions"
    assert client.get(url, headers=OPENAI_HEADERS).status_code == 400
    too_many = client.get(
        url, headers=OPENAI_HEADERS, params={"start_time": _ts(DAY0), "bucket_width": "1d", "limit": 32}
    )
    assert too_many.status_code == 400


# --- Anthropic ------------------------------------------------------------------------------------


def _anthropic_pages(client: httpx.Client, url: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    buckets = []
    page = None
    while True:
        body = _json(
            client.get(url, headers=ANTHROPIC_HEADERS, params={**params, **({"page": page} if page else {})})
        )
        buckets += body["data"]
        if not body["has_more"]:
            return buckets
        page = body["next_page"]


def test_anthropic_usage_and_cost_report_match_oracle(sim: ProviderSimulator, client: httpx.Client) -> None:
    start, end = DAY0 - timedelta(days=9), DAY0 + timedelta(days=2)
    base = sim.account_url("anthropic") + "/v1/organizations"
    window = {
        "starting_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ending_at": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    usage = _anthropic_pages(
        client, base + "/usage_report/messages", {**window, "group_by[]": ["model", "api_key_id"], "limit": 4}
    )
    assert len(usage) == 11 and usage[0]["starting_at"] == window["starting_at"]
    tokens: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for bucket in usage:
        day = datetime.fromisoformat(bucket["starting_at"]).date()
        for r in bucket["results"]:
            assert r["workspace_id"] is None and r["service_tier"] is None  # not grouped by them
            acc = tokens[(day, r["model"])]
            cache = r["cache_creation"]
            acc[0] += (
                r["uncached_input_tokens"]
                + r["cache_read_input_tokens"]
                + cache["ephemeral_5m_input_tokens"]
                + (cache["ephemeral_1h_input_tokens"])
            )
            acc[1] += r["output_tokens"]
            acc[2] += r["cache_read_input_tokens"]
            acc[3] += cache["ephemeral_5m_input_tokens"]
    expected = sim.expected_usage("anthropic", start, end)
    assert {k: tuple(v) for k, v in tokens.items()} == {
        k: (t.input_tokens, t.output_tokens, t.cache_read_tokens, t.cache_write_tokens)
        for k, t in expected.items()
    }
    costs = _anthropic_pages(
        client, base + "/cost_report", {**window, "group_by[]": ["description"], "limit": 5}
    )
    cost: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
    for bucket in costs:
        for r in bucket["results"]:
            assert isinstance(r["amount"], str) and r["currency"] == "USD"
            cost[(datetime.fromisoformat(bucket["starting_at"]).date(), r["model"])] += (
                Decimal(r["amount"]) / 100
            )
    assert dict(cost) == {k: t.cost for k, t in expected.items()}


def test_anthropic_auth_and_version_header(sim: ProviderSimulator, client: httpx.Client) -> None:
    url = sim.account_url("anthropic") + "/v1/organizations/cost_report"
    params = {"starting_at": "2026-11-17T00:00:00Z"}
    bad = client.get(url, params=params, headers={"x-api-key": "nope", "anthropic-version": "2023-06-01"})
    assert bad.status_code == 401 and bad.json()["error"]["type"] == "authentication_error"
    no_version = client.get(url, params=params, headers={"x-api-key": "sim-anthropic-secret"})
    assert no_version.status_code == 400 and no_version.json()["type"] == "error"


# --- DeepSeek and OpenRouter ----------------------------------------------------------------------


def test_deepseek_balance_is_decimal_strings(sim: ProviderSimulator, client: httpx.Client) -> None:
    body = client.get(
        sim.account_url("deepseek") + "/user/balance", headers={"Authorization": "Bearer sim-deepseek-secret"}
    ).json()
    info = body["balance_infos"][0]
    assert body["is_available"] is True and info["currency"] == "CNY"
    assert Decimal(info["total_balance"]) == sim.balance("deepseek").remaining.quantize(Decimal("0.01"))
    assert Decimal(info["total_balance"]) == Decimal(info["granted_balance"]) + Decimal(
        info["topped_up_balance"]
    )
    assert client.get(sim.account_url("deepseek") + "/user/balance").status_code == 401


def test_openrouter_activity_credits_and_key(sim: ProviderSimulator, client: httpx.Client) -> None:
    base = sim.account_url("openrouter") + "/api/v1"
    rows = _json(client.get(base + "/activity", headers=OPENROUTER_HEADERS))["data"]
    today = datetime.combine(NOW.date(), datetime.min.time(), UTC)
    expected = sim.expected_usage("openrouter", today - timedelta(days=30), today)
    assert {
        (date.fromisoformat(r["date"]), r["model"]): (
            r["usage"],
            r["requests"],
            r["prompt_tokens"],
            r["completion_tokens"],
        )
        for r in rows
    } == {k: (t.cost, t.requests, t.input_tokens, t.output_tokens) for k, t in expected.items()}
    one_day = _json(
        client.get(base + "/activity", headers=OPENROUTER_HEADERS, params={"date": "2026-11-17"})
    )["data"]
    assert {r["date"] for r in one_day} == {"2026-11-17"}
    credits = _json(client.get(base + "/credits", headers=OPENROUTER_HEADERS))["data"]
    state = sim.balance("openrouter")
    assert credits["total_credits"] - credits["total_usage"] == state.remaining
    inference = {"Authorization": "Bearer sim-openrouter-inference-secret"}
    assert client.get(base + "/credits", headers=inference).status_code == 403
    key = _json(client.get(base + "/key", headers=inference))["data"]
    assert key["is_management_key"] is False and key["limit_remaining"] == key["limit"] - key["usage"]


# --- transport, faults, revisions, twins ----------------------------------------------------------


def test_gzip_only_when_asked(sim: ProviderSimulator) -> None:
    url = sim.account_url("reseller") + "/api/status"
    with httpx.Client() as http:
        zipped = http.get(url, headers={"Accept-Encoding": "gzip"})
        plain = http.get(url, headers={"Accept-Encoding": "identity"})
    assert zipped.headers["content-encoding"] == "gzip" and "content-encoding" not in plain.headers
    assert zipped.json() == plain.json()


def test_faults_apply_to_the_next_requests_of_that_account_only(
    sim: ProviderSimulator, client: httpx.Client
) -> None:
    url = sim.account_url("openai") + "/v1/organization/projects"
    sim.inject("openai", "rate_limit", times=2, retry_after=7)
    other = client.get(sim.account_url("reseller") + "/api/status")
    assert other.status_code == 200
    for _ in range(2):
        limited = client.get(url, headers=OPENAI_HEADERS)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert client.get(url, headers=OPENAI_HEADERS).status_code == 200
    assert [r.fault for r in sim.request_log if r.account_slug == "openai"] == [
        "rate_limit",
        "rate_limit",
        "",
    ]


@pytest.mark.parametrize(
    ("mode", "status"),
    [
        ("server_error", 500),
        ("bad_gateway_html", 502),
        ("unauthorized", 401),
        ("forbidden", 403),
        ("success_false", 200),
    ],
)
def test_fault_statuses(sim: ProviderSimulator, client: httpx.Client, mode: str, status: int) -> None:
    sim.inject("reseller", mode)
    response = client.get(sim.account_url("reseller") + "/api/user/self", headers=NEWAPI_HEADERS)
    assert response.status_code == status
    if mode == "bad_gateway_html":
        assert (
            response.headers["content-type"].startswith("text/html")
            and b"502 Bad Gateway" in response.content
        )
    else:
        assert response.json()["success"] is False


def test_truncated_huge_stall_and_disconnect(sim: ProviderSimulator, client: httpx.Client) -> None:
    url = sim.account_url("anthropic") + "/v1/organizations/cost_report"
    params = {"starting_at": "2026-11-17T00:00:00Z"}
    sim.inject("anthropic", "truncated")
    cut = client.get(url, headers=ANTHROPIC_HEADERS, params=params)
    assert cut.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.content)
    sim.inject("anthropic", "huge")
    assert len(client.get(url, headers=ANTHROPIC_HEADERS, params=params).content) >= 5 * 1024 * 1024
    sim.inject("anthropic", "stall", seconds=3)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.get(url, headers=ANTHROPIC_HEADERS, params=params, timeout=0.5)
    assert time.monotonic() - started < 2
    sim.inject("anthropic", "disconnect")
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(url, headers=ANTHROPIC_HEADERS, params=params)
    assert client.get(url, headers=ANTHROPIC_HEADERS, params=params).status_code == 200
    with pytest.raises(ValueError, match="unknown fault mode"):
        sim.inject("anthropic", "meteor")


def test_revision_restates_an_hour_everywhere(sim: ProviderSimulator, client: httpx.Client) -> None:
    hour = DAY0 + timedelta(hours=3)
    day = (DAY0, DAY0 + timedelta(days=1))
    before = sim.expected_usage("openai", *day)
    sim.revise("openai", hour, Decimal(2))
    after = sim.expected_usage("openai", *day)
    assert sum(t.input_tokens for t in after.values()) > sum(t.input_tokens for t in before.values())
    buckets = _openai_pages(
        client,
        sim.account_url("openai") + "/v1/organization/costs",
        {"start_time": _ts(day[0]), "end_time": _ts(day[1])},
    )
    assert sum(r["amount"]["value"] for b in buckets for r in b["results"]) == sum(
        t.cost for t in after.values()
    )


def test_twins_are_two_identical_rows_in_one_second(sim: ProviderSimulator, client: httpx.Client) -> None:
    at = DAY0 + timedelta(hours=7, seconds=11)
    quota_before = sim.expected_quota("reseller", at, at + timedelta(seconds=1))
    twin, _ = sim.twins("reseller", at)
    items = [
        i
        for p in _newapi_pages(
            client, sim.account_url("reseller"), type=2, start_timestamp=_ts(at), end_timestamp=_ts(at)
        )
        for i in p["items"]
    ]
    twins = [i for i in items if i["token_name"] == twin.key_external_id and i["quota"] == twin.quota]
    assert len(twins) >= 2
    assert {json.dumps({k: v for k, v in i.items() if k != "id"}, sort_keys=True) for i in twins[:2]} == {
        json.dumps({k: v for k, v in twins[0].items() if k != "id"}, sort_keys=True)
    }
    assert sim.expected_quota("reseller", at, at + timedelta(seconds=1)) == quota_before + 2 * (
        twin.quota or 0
    )
    stat = client.get(
        sim.account_url("reseller") + "/api/log/self/stat",
        headers=NEWAPI_HEADERS,
        params={"start_timestamp": _ts(at), "end_timestamp": _ts(at)},
    ).json()["data"]
    assert stat["quota"] == quota_before + 2 * (twin.quota or 0)


def test_rows_appear_as_the_clock_moves() -> None:
    clock = SimClock(NOW)
    with ProviderSimulator(clock=clock, anchor=ANCHOR) as sim, httpx.Client() as http:
        url = sim.account_url("reseller") + "/api/log/self"
        params = {"p": 1, "page_size": 1, "start_timestamp": _ts(NOW - timedelta(hours=1))}
        total = http.get(url, headers=NEWAPI_HEADERS, params=params).json()["data"]["total"]
        clock.advance(timedelta(minutes=30))
        assert http.get(url, headers=NEWAPI_HEADERS, params=params).json()["data"]["total"] > total


def test_two_simulators_with_the_same_clock_answer_byte_for_byte_alike(client: httpx.Client) -> None:
    bodies = []
    for _ in range(2):
        with ProviderSimulator(clock=NOW) as sim:
            response = client.get(
                sim.account_url("anthropic") + "/v1/organizations/usage_report/messages",
                headers={**ANTHROPIC_HEADERS, "Accept-Encoding": "identity"},
                params={"starting_at": "2026-11-10T00:00:00Z", "group_by[]": "api_key_id"},
            )
            bodies.append(response.content)
    assert bodies[0] == bodies[1]


def test_simulate_providers_command_serves_until_interrupted() -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "simulate_providers", "--port", "0", "--seed", "7", "--no-warm"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("Provider simulator on http://127.0.0.1:"), first
        base = first.split()[3]
        assert httpx.get(base + "/reseller/api/status").json()["data"]["quota_per_unit"] == 500000
        process.send_signal(signal.SIGINT)
        # Generous: bounds a hang, times nothing (CI shares two cores with the PostgreSQL run).
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_balance_read_at_a_moving_clock_equals_a_fresh_simulators_balance() -> None:
    """Remembered hour sums must not leak across clock moves, backwards included, or revisions."""
    clock = SimClock(NOW - timedelta(days=20))
    moving = ProviderSimulator(clock=clock, anchor=NOW.date())
    moments = [NOW - timedelta(days=20), NOW - timedelta(days=3, hours=5), NOW - timedelta(days=11), NOW]
    for moment in moments:
        clock.set(moment)
        fresh = ProviderSimulator(clock=SimClock(moment), anchor=NOW.date())
        assert moving.balance("reseller") == fresh.balance("reseller")
    moving.revise("reseller", NOW - timedelta(days=4), "2")
    clock.set(NOW)
    revised = ProviderSimulator(clock=SimClock(NOW), anchor=NOW.date())
    revised.revise("reseller", NOW - timedelta(days=4), "2")
    assert moving.balance("reseller") == revised.balance("reseller")
    assert revised.balance("reseller") != fresh.balance("reseller")
