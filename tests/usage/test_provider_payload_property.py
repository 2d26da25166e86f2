"""B3: every connector's recorded fixtures, mutated, are parsed or rejected with a ProviderError.

Each property takes the recorded pages of one provider call (tests/fixtures/<provider>/), applies a
few random mutations (unknown fields, nulls, missing keys, numbers as strings, New API ``other``
as string / object / garbage, ids missing / 0 / ``id % 1024``, empty pages, junk list items,
wrong ``has_more``, wrong types and absurd numbers) and runs the connector's own parsing on them
through a stub HTTP client (no network). Parsing must either return results the database would
store (``usage.records.check_row``, the push API's and file import's limits; money as finite
Decimal) or raise the connectors' documented ``ProviderError`` with a message. Anything else
(KeyError, TypeError, OverflowError, decimal.InvalidOperation, ...) fails the property.

A second group of properties is metamorphic: mutations that carry no information (unknown fields,
unstable ids, integers sent as digit strings) must not change a single parsed row.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from projects.money import loads_exact, to_units
from tests import factories
from usage import ingest
from usage.models import RunStatus, UsageRecord
from usage.providers.anthropic import AnthropicConnector
from usage.providers.base import (
    AccountConfig,
    BalanceReading,
    Connector,
    CostLine,
    KeyInfo,
    TopUpReading,
    UsageRow,
)
from usage.providers.deepseek import DeepSeekConnector
from usage.providers.http import AuthError, ProviderError, ProviderHTTP
from usage.providers.newapi import NewApiConnector, OneApiConnector
from usage.providers.openai import OpenAIConnector
from usage.providers.openrouter import OpenRouterConnector
from usage.records import RecordError, check_row

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 1, 3, tzinfo=UTC)
INT64 = 2**63
EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Json = Any
Path_ = tuple[str | int, ...]


def fixture(name: str) -> Json:
    # As ProviderHTTP.get_json decodes it: JSON numbers as int / Decimal, never float.
    return loads_exact((FIXTURES / name).read_bytes())


# --- mutations ---------------------------------------------------------------------------------

ODD_VALUES: list[Json] = [
    None,
    True,
    False,
    0,
    -1,
    -(10**6),
    10**30,
    Decimal("1.5"),
    Decimal("-0.0"),
    Decimal("1E+30"),
    "",
    "n/a",
    "NaN",
    "-Infinity",
    "1e400",
    "2026-13-45T00:00:00Z",
    [],
    [1, 2],
    {},
    {"value": 1},
]
OTHER_SHAPES: list[Json] = [
    "",
    "{}",
    "not json",
    "[1, 2]",
    "null",
    '{"cache_tokens": "12", "claude": "yes"}',
    '{"claude": true, "cache_tokens": 10, "cache_creation_tokens_5m": "3", "cache_creation_tokens_1h": null}',
    '{"error_code": 429, "cache_tokens": 1e400}',
    '{"cache_tokens": NaN}',
    {"claude": True, "cache_tokens": None, "cache_creation_tokens": "x"},
    {"cache_tokens": -5},
    {"request_id": 7, "error_code": {"nested": True}},
    7,
    [],
    None,
]
# A whole page that is not the shape asked for (HTML error pages are caught earlier, by ProviderHTTP).
ODD_BODIES: list[Json] = [
    None,
    [],
    {},
    "ok",
    7,
    {"data": None},
    {"data": {}},
    {"success": True},
    {"success": True, "data": None},
    {"success": True, "data": "[]"},
    {"success": "true", "data": []},
    {"success": False, "message": None},
    {"error": {"message": "upstream error", "type": "server_error"}},
]
UNKNOWN_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.text(max_size=8),
    st.sampled_from([{"nested": [1, {"x": None}]}, [], [{"id": 1}], Decimal("0.1")]),
)


def walk(node: Json, path: Path_ = ()) -> Iterator[tuple[Path_, Json]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, index))


def parent_of(root: Json, path: Path_) -> tuple[Json, str | int]:
    node = root
    for part in path[:-1]:
        node = node[part]
    return node, path[-1]


def is_number(value: Json) -> bool:
    return isinstance(value, (int, Decimal)) and not isinstance(value, bool)


def is_id(path: Path_) -> bool:
    return bool(path) and isinstance(path[-1], str) and (path[-1] == "id" or path[-1].endswith("_id"))


def number_as_string(draw: st.DrawFn, value: int | Decimal) -> str:
    forms = [str(value), f" {value} ", f"{Decimal(value):E}"]
    if isinstance(value, int):
        forms.append(f"{value}.0")
    return draw(st.sampled_from(forms))


def mutate_once(draw: st.DrawFn, root: Json, kinds: tuple[str, ...]) -> str | None:
    """Apply one mutation of a drawn kind at a drawn place in ``root`` (in place); return what it did."""
    kind = draw(st.sampled_from([k for k in kinds if k != "whole_body"]))  # whole_body: see mutated()
    places = list(walk(root))
    fits: dict[str, Callable[[Path_, Json], bool]] = {
        "unknown_field": lambda p, v: isinstance(v, dict),
        "null": lambda p, v: bool(p),
        "missing": lambda p, v: bool(p) and isinstance(p[-1], str),
        "as_string": lambda p, v: bool(p) and is_number(v),
        "int_as_string": lambda p, v: bool(p) and isinstance(v, int) and not isinstance(v, bool),
        "wrong_type": lambda p, v: bool(p) and not isinstance(v, (dict, list)),
        "odd_value": lambda p, v: bool(p),
        "other": lambda p, v: isinstance(v, dict) and ("other" in v or "model_name" in v),
        "id": lambda p, v: is_id(p),
        # The ids gateways number their rows with (request_id is a real id and may matter).
        "row_id": lambda p, v: bool(p) and p[-1] in ("id", "user_id", "token_id"),
        "empty_list": lambda p, v: isinstance(v, list),
        "junk_item": lambda p, v: isinstance(v, list),
        "duplicate_item": lambda p, v: isinstance(v, list) and bool(v),
        "has_more": lambda p, v: isinstance(v, dict) and ("has_more" in v or "next_page" in v),
    }
    targets = [(p, v) for p, v in places if fits[kind](p, v)]
    if not targets:
        return None
    path, value = draw(st.sampled_from(targets))
    where = "/".join(str(part) for part in path)
    if kind == "unknown_field":
        name = "x_future_" + draw(st.text("abcdefgh_", min_size=1, max_size=6))
        value[name] = copy.deepcopy(draw(UNKNOWN_VALUES))
        return f"{where}: added {name}={value[name]!r}"
    if kind == "empty_list":
        value.clear()
        return f"{where}: emptied"
    if kind == "junk_item":
        junk = copy.deepcopy(draw(st.sampled_from([None, 0, "x", [], True, Decimal("1.5")])))
        value.insert(draw(st.integers(0, len(value))), junk)
        return f"{where}: inserted {junk!r}"
    if kind == "duplicate_item":
        value.append(copy.deepcopy(draw(st.sampled_from(value))))
        return f"{where}: duplicated an item"
    if kind == "other":
        value["other"] = copy.deepcopy(draw(st.sampled_from(OTHER_SHAPES)))
        return f"{where}/other = {value['other']!r}"
    if kind == "has_more":
        value["has_more"] = draw(st.sampled_from([True, False, None, "true", "false", 1, 0]))
        if draw(st.booleans()):
            value["next_page"] = draw(st.sampled_from([None, "", "page_bogus", 0]))
        return f"{where}: has_more={value['has_more']!r} next_page={value.get('next_page')!r}"
    parent, key = parent_of(root, path)
    if kind == "missing":
        del parent[key]
        return f"{where}: removed"
    if kind in ("id", "row_id"):
        choices: list[Json] = [0, "missing", str(value)]
        if isinstance(value, int) and not isinstance(value, bool):
            choices.append(value % 1024)
        new = draw(st.sampled_from(choices))
        if new == "missing":
            del parent[key]
        else:
            parent[key] = new
        return f"{where}: id -> {new!r}"
    if kind == "null":
        parent[key] = None
    elif kind == "int_as_string":
        parent[key] = str(value)
    elif kind == "as_string":
        parent[key] = number_as_string(draw, value)
    else:  # wrong_type, odd_value
        parent[key] = copy.deepcopy(draw(st.sampled_from(ODD_VALUES)))
    return f"{where}: {value!r} -> {parent[key]!r}"


ALL_KINDS = (
    "unknown_field",
    "null",
    "missing",
    "as_string",
    "wrong_type",
    "odd_value",
    "other",
    "id",
    "empty_list",
    "junk_item",
    "duplicate_item",
    "has_more",
    "whole_body",
)
# Mutations that carry no information: the parsed result must not change at all.
HARMLESS_KINDS = ("unknown_field", "int_as_string")


@st.composite
def mutated(draw: st.DrawFn, pages: dict[str, Json], kinds: tuple[str, ...] = ALL_KINDS) -> dict[str, Json]:
    """Return a deep copy of ``pages`` (name -> decoded body) with 1-6 mutations applied."""
    bodies = copy.deepcopy(pages)
    names = sorted(bodies)
    for _ in range(draw(st.integers(1, 6))):
        name = draw(st.sampled_from(names))
        if "whole_body" in kinds and draw(st.integers(0, 15)) == 0:
            bodies[name] = copy.deepcopy(draw(st.sampled_from(ODD_BODIES)))
            note(f"{name}: whole body -> {bodies[name]!r}")
            continue
        done = mutate_once(draw, bodies[name], kinds)
        if done:
            note(f"{name}: {done}")
    return bodies


# --- a stub HTTP client serving the mutated bodies ------------------------------------------------


class StubHTTP:
    """Stands in for ProviderHTTP: ``route(path, params, call_number)`` returns the decoded body."""

    def __init__(self, route: Callable[[str, dict[str, Any], int], Json]) -> None:
        self.route = route
        self.calls: dict[str, int] = {}

    def get_json(self, path: str, params: Any = None) -> Json:
        number = self.calls.get(path, 0)
        self.calls[path] = number + 1
        return copy.deepcopy(self.route(path, dict(params or {}), number))

    def close(self) -> None:
        pass


def connect(cls: type[Connector], route: Callable[[str, dict[str, Any], int], Json], **config: Any) -> Any:
    account = AccountConfig(cls.kind, "https://provider.invalid", "sk-test-secret-0001", **config)
    return cls(account, http=cast(ProviderHTTP, StubHTTP(route)))


def in_sequence(pages: list[Json], past_the_end: Json) -> Callable[[str, dict[str, Any], int], Json]:
    """Serve the pages of a cursor-paged report in call order, then an empty last page."""
    return lambda path, params, number: pages[number] if number < len(pages) else past_the_end


# --- what a parsed result must look like ----------------------------------------------------------


def storable(row: UsageRow) -> None:
    assert isinstance(row, UsageRow)
    for name in (
        "input_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "output_tokens",
        "reasoning_tokens",
    ):
        assert type(getattr(row, name)) is int, name
    assert type(row.requests) is int and type(row.bucket_seconds) is int
    assert 0 <= row.bucket_seconds < 2**31
    assert row.cost is None or (type(row.cost) is Decimal and row.cost.is_finite())
    assert row.occurred_at.utcoffset() == timedelta(0)
    assert row.raw_quota is None or type(row.raw_quota) is int
    assert row.latency_ms is None or type(row.latency_ms) is int
    assert isinstance(row.natural_key, str) and row.natural_key
    try:
        check_row(row)  # the limits the database enforces (push API and file import use the same)
    except RecordError as exc:
        raise AssertionError(f"parsed a row the database would refuse: {exc} ({row!r})") from None


def money(amount: Decimal | None, *, optional: bool = False) -> None:
    if amount is None and optional:
        return
    assert type(amount) is Decimal and amount.is_finite(), amount
    # Fits the int64 of 1e-10 units MoneyField stores.
    assert abs(to_units(amount)) < INT64


def check_cost_line(line: CostLine) -> None:
    assert isinstance(line, CostLine) and type(line.day) is date
    money(line.amount)
    assert isinstance(line.model, str) and line.model and isinstance(line.currency, str)


def check_balance(reading: BalanceReading) -> None:
    assert isinstance(reading, BalanceReading)
    money(reading.remaining)
    for amount in (reading.used, reading.granted, reading.topped_up, reading.total_credits):
        money(amount, optional=True)
    for count in (reading.raw_quota, reading.raw_used_quota, reading.request_count):
        assert count is None or (type(count) is int and abs(count) < INT64)
    assert isinstance(reading.currency, str)


def check_topup(topup: TopUpReading) -> None:
    money(topup.amount)
    money(topup.money_paid, optional=True)
    assert topup.created_at.utcoffset() == timedelta(0)
    assert topup.credited_at is None or topup.credited_at.utcoffset() == timedelta(0)
    assert topup.order_ref and len(topup.order_ref) <= 200


def check_key(key: KeyInfo) -> None:
    assert isinstance(key.external_id, str) and key.external_id
    assert isinstance(key.name, str) and isinstance(key.provider_project, str)


def parsed_or_rejected(parse: Callable[[], list[Any]], check: Callable[[Any], None]) -> list[Any] | None:
    """Run ``parse``; a ProviderError with a message is a rejection, anything else escapes (and fails)."""
    try:
        results = parse()
    except ProviderError as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        note(f"rejected: {type(exc).__name__}: {exc}")
        return None
    for result in results:
        check(result)
    return results


def usage_rows(connector: Connector) -> list[UsageRow]:
    return [row for page in connector.fetch_usage(START, END) for row in page.rows]


# --- the providers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One connector call over recorded pages: how to serve them, what to call, how to check it."""

    pages: dict[str, Json]
    run: Callable[[dict[str, Json]], list[Any]]
    check: Callable[[Any], None]


def openai_usage(bodies: dict[str, Json]) -> list[Any]:
    empty = {"object": "page", "has_more": False, "next_page": None, "data": []}
    route = in_sequence([bodies["usage_page1"], bodies["usage_page2"]], empty)
    return usage_rows(connect(OpenAIConnector, route))


def openai_costs(bodies: dict[str, Json]) -> list[Any]:
    empty = {"object": "page", "has_more": False, "data": []}
    return list(connect(OpenAIConnector, in_sequence([bodies["costs"]], empty)).fetch_costs(START, END))


def openai_keys(bodies: dict[str, Json]) -> list[Any]:
    def route(path: str, params: dict[str, Any], number: int) -> Json:
        if number:
            return {"object": "list", "data": [], "has_more": False}
        return bodies["projects"] if path.endswith("/projects") else bodies["project_keys"]

    return list(connect(OpenAIConnector, route).list_keys())


def anthropic_usage(bodies: dict[str, Json]) -> list[Any]:
    empty = {"has_more": False, "next_page": None, "data": []}
    return usage_rows(connect(AnthropicConnector, in_sequence([bodies["usage"]], empty)))


def anthropic_costs(bodies: dict[str, Json]) -> list[Any]:
    empty = {"has_more": False, "next_page": None, "data": []}
    return list(
        connect(AnthropicConnector, in_sequence([bodies["cost_report"]], empty)).fetch_costs(START, END)
    )


def deepseek_balance(bodies: dict[str, Json]) -> list[Any]:
    return list(connect(DeepSeekConnector, lambda path, params, n: bodies["balance"]).fetch_balance())


def openrouter_balance(bodies: dict[str, Json]) -> list[Any]:
    def route(path: str, params: dict[str, Any], number: int) -> Json:
        if path.endswith("/credits"):
            if "credits" not in bodies:  # an inference key: 403, then its own limit
                raise AuthError("403 Forbidden", status=403)
            return bodies["credits"]
        return bodies["key"]

    return list(connect(OpenRouterConnector, route).fetch_balance())


def openrouter_usage(bodies: dict[str, Json]) -> list[Any]:
    def route(path: str, params: dict[str, Any], number: int) -> Json:
        return bodies["activity_key"] if params.get("api_key_hash") else bodies["activity"]

    return usage_rows(connect(OpenRouterConnector, route, key_ids=("key_hash_1",)))


def gateway_pages(pages: list[Json], *, one_based: bool) -> Callable[[str, dict[str, Any], int], Json]:
    def route(path: str, params: dict[str, Any], number: int) -> Json:
        index = int(params["p"]) - (1 if one_based else 0)
        if 0 <= index < len(pages):
            return pages[index]
        return {"success": True, "message": "", "data": {"items": []} if one_based else []}

    return route


def newapi_usage(bodies: dict[str, Json]) -> list[Any]:
    pages = [bodies["log_page1"], bodies["log_page2"], bodies["log_page3"]]
    return usage_rows(connect(NewApiConnector, gateway_pages(pages, one_based=True), newapi_user_id=42))


def oneapi_usage(bodies: dict[str, Json]) -> list[Any]:
    pages = [bodies["log_p0"], bodies["log_p1"]]
    return usage_rows(connect(OneApiConnector, gateway_pages(pages, one_based=False)))


def newapi_balance(bodies: dict[str, Json]) -> list[Any]:
    return list(connect(NewApiConnector, lambda path, params, n: bodies["user_self"]).fetch_balance())


def newapi_topups(bodies: dict[str, Json]) -> list[Any]:
    route = gateway_pages([bodies["topups"]], one_based=True)
    return list(connect(NewApiConnector, route).fetch_topups())


def pages_of(**names: str) -> dict[str, Json]:
    return {name: fixture(path) for name, path in names.items()}


CALLS: dict[str, Call] = {
    "openai_usage": Call(
        pages_of(usage_page1="openai/usage_page1.json", usage_page2="openai/usage_page2.json"),
        openai_usage,
        storable,
    ),
    "openai_costs": Call(pages_of(costs="openai/costs.json"), openai_costs, check_cost_line),
    "openai_keys": Call(
        pages_of(projects="openai/projects.json", project_keys="openai/project_keys.json"),
        openai_keys,
        check_key,
    ),
    "anthropic_usage": Call(pages_of(usage="anthropic/usage.json"), anthropic_usage, storable),
    "anthropic_costs": Call(
        pages_of(cost_report="anthropic/cost_report.json"), anthropic_costs, check_cost_line
    ),
    "deepseek_balance": Call(pages_of(balance="deepseek/balance.json"), deepseek_balance, check_balance),
    "openrouter_credits": Call(
        pages_of(credits="openrouter/credits.json"), openrouter_balance, check_balance
    ),
    "openrouter_key_limit": Call(pages_of(key="openrouter/key.json"), openrouter_balance, check_balance),
    "openrouter_usage": Call(
        pages_of(activity="openrouter/activity.json", activity_key="openrouter/activity.json"),
        openrouter_usage,
        storable,
    ),
    "newapi_usage": Call(
        pages_of(
            log_page1="newapi/log_page1.json",
            log_page2="newapi/log_page2.json",
            log_page3="newapi/log_page3.json",
        ),
        newapi_usage,
        storable,
    ),
    "newapi_balance": Call(pages_of(user_self="newapi/user_self.json"), newapi_balance, check_balance),
    "newapi_topups": Call(pages_of(topups="newapi/topups.json"), newapi_topups, check_topup),
    "oneapi_usage": Call(
        pages_of(log_p0="oneapi/log_p0.json", log_p1="oneapi/log_p1.json"), oneapi_usage, storable
    ),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_the_recorded_fixtures_parse_as_they_are(name: str) -> None:
    call = CALLS[name]
    results = call.run(copy.deepcopy(call.pages))
    assert results, f"{name}: the unmutated fixtures parse to nothing, so the property would test nothing"
    for result in results:
        call.check(result)


@pytest.mark.parametrize("name", list(CALLS))
@EXAMPLES
@given(data=st.data())
def test_mutated_payloads_are_parsed_or_rejected_with_a_provider_error(
    name: str, data: st.DataObject
) -> None:
    call = CALLS[name]
    bodies = data.draw(mutated(call.pages))
    parsed_or_rejected(lambda: call.run(bodies), call.check)


@pytest.mark.parametrize("name", list(CALLS))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_unknown_fields_and_integers_as_digit_strings_change_nothing(name: str, data: st.DataObject) -> None:
    call = CALLS[name]
    bodies = data.draw(mutated(call.pages, HARMLESS_KINDS))
    assert call.run(bodies) == call.run(copy.deepcopy(call.pages))


@pytest.mark.parametrize("name", ["newapi_usage", "oneapi_usage", "newapi_topups", "newapi_balance"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_gateway_ids_missing_zero_or_modulo_1024_change_nothing(name: str, data: st.DataObject) -> None:
    # New API log ids wrap at 1024 and One API's are 0: no natural key may depend on them.
    call = CALLS[name]
    bodies = data.draw(mutated(call.pages, ("row_id",)))
    assert call.run(bodies) == call.run(copy.deepcopy(call.pages))


# --- cases the properties found (each crashed or produced an unstorable row before the fix) ------


def rejected(call: str, bodies: dict[str, Json]) -> str:
    with pytest.raises(ProviderError) as caught:
        CALLS[call].run(bodies)
    return str(caught.value)


def test_an_openai_bucket_without_start_time_is_rejected_not_dated_1970() -> None:
    bodies = copy.deepcopy(CALLS["openai_usage"].pages)
    bodies["usage_page1"]["data"][0]["start_time"] = None
    # Was: rows at 1970-01-01 with a 56-year bucket.
    assert "Unix time" in rejected("openai_usage", bodies)


@pytest.mark.parametrize("call", ["openai_usage", "openai_costs", "anthropic_usage", "anthropic_costs"])
def test_results_that_are_not_a_list_are_rejected(call: str) -> None:
    bodies = copy.deepcopy(CALLS[call].pages)
    next(iter(bodies.values()))["data"][0]["results"] = True
    # Was: TypeError 'bool' object is not iterable.
    assert "results is not a list" in rejected(call, bodies)


def test_an_absurd_gateway_quota_is_rejected() -> None:
    usage = copy.deepcopy(CALLS["newapi_usage"].pages)
    usage["log_page3"]["data"]["items"][0]["quota"] = 10**30
    balance = copy.deepcopy(CALLS["newapi_balance"].pages)
    balance["user_self"]["data"]["quota"] = "1E+30"
    # Was: decimal.InvalidOperation from quota_to_amount.
    assert "out of range" in rejected("newapi_usage", usage)
    assert "out of range" in rejected("newapi_balance", balance)


def test_a_top_up_time_past_any_calendar_is_rejected() -> None:
    bodies = copy.deepcopy(CALLS["newapi_topups"].pages)
    bodies["topups"]["data"]["items"][1]["create_time"] = "1e400"
    # Was: OverflowError from datetime.fromtimestamp.
    assert "out of range" in rejected("newapi_topups", bodies)


@pytest.mark.parametrize(
    ("call", "page", "field", "value"),
    [
        ("newapi_usage", "log_page1", "prompt_tokens", -1),
        ("newapi_usage", "log_page1", "use_time", -1),
        ("oneapi_usage", "log_p0", "completion_tokens", "-500"),
    ],
)
def test_a_log_row_the_database_would_refuse_is_rejected_with_the_reason(
    call: str, page: str, field: str, value: Json
) -> None:
    bodies = copy.deepcopy(CALLS[call].pages)
    items = bodies[page]["data"]
    (items["items"] if isinstance(items, dict) else items)[0][field] = value
    # Was: a row with a negative count or latency, refused by the usage_record CHECK constraints
    # only when the chunk was written, failing the run as an internal error.
    assert "must be between 0 and" in rejected(call, bodies)


def test_huge_balances_and_costs_are_rejected_before_they_reach_a_money_column() -> None:
    deepseek = copy.deepcopy(CALLS["deepseek_balance"].pages)
    deepseek["balance"]["balance_infos"][0]["total_balance"] = Decimal("1E+30")
    costs = copy.deepcopy(CALLS["openai_costs"].pages)
    costs["costs"]["data"][0]["results"][0]["amount"]["value"] = "1e400"
    # Was: decimal.InvalidOperation when the amount was converted to storage units.
    assert "amount out of range" in rejected("deepseek_balance", deepseek)
    assert "amount out of range" in rejected("openai_costs", costs)


def test_openrouter_key_activity_above_the_account_total_is_rejected() -> None:
    bodies = copy.deepcopy(CALLS["openrouter_usage"].pages)
    bodies["activity"]["data"][0]["prompt_tokens"] = None
    # Was: an unattributed remainder row with input_tokens = -50.
    assert "input_tokens: must be between 0 and" in rejected("openrouter_usage", bodies)


def test_anthropic_cost_report_cents_up_to_the_storable_amount_still_parse() -> None:
    bodies = copy.deepcopy(CALLS["anthropic_costs"].pages)
    bodies["cost_report"]["data"][0]["results"][2]["amount"] = "9999999999.00"  # cents: $99,999,999.99
    lines = CALLS["anthropic_costs"].run(bodies)
    assert Decimal("99999999.99") in {line.amount for line in lines}


@pytest.mark.django_db
def test_an_ingest_run_over_a_refused_row_ends_failed_with_the_reason_and_stores_nothing() -> None:
    account = factories.make_account(factories.make_org(), "newapi", newapi_user_id=42)
    bodies = copy.deepcopy(CALLS["newapi_usage"].pages)
    day_end = START + timedelta(days=1)

    def run() -> Any:
        pages = [bodies["log_page1"], bodies["log_page2"], bodies["log_page3"]]
        connector = connect(NewApiConnector, gateway_pages(pages, one_based=True), newapi_user_id=42)
        return ingest.usage_ingest_window(account=account, start=START, end=day_end, connector=connector)

    bodies["log_page1"]["data"]["items"][0]["completion_tokens"] = -480
    refused = run()
    # Was: "internal error: IntegrityError" from the usage_record CHECK constraint.
    assert (refused.status, refused.error_kind) == (RunStatus.FAILED, ingest.ErrorKind.PROVIDER)
    assert "output_tokens: must be between 0 and" in refused.error
    assert not UsageRecord.objects.filter(provider_account=account).exists()

    bodies["log_page1"]["data"]["items"][0]["completion_tokens"] = 480  # the provider fixes it
    fixed = run()
    assert fixed.status == RunStatus.SUCCESS
    assert UsageRecord.objects.filter(provider_account=account).count() == 4
