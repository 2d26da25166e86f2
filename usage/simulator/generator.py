"""Deterministic traffic for the simulated world.

Every hour of every account is generated from its own random stream seeded by
``(seed, anchor, account, hour)``, so the same hour always yields the same events whatever
window asks for it, and any window can be regenerated on demand. ``anchor`` is the day the
scenario is told relative to ("a retry storm ~10 days ago"); it defaults to today (UTC).

Shape of the traffic:
- weekday > weekend; two daily peaks, UTC+8 office hours (01-10 UTC) and US hours (14-23 UTC);
  volume grows ~0.4 %/day.
- gateways (New API, One API) produce one event per request; OpenAI, Anthropic, DeepSeek and
  OpenRouter produce hourly buckets per key x model (``bucket_seconds=3600``).
- the New API account's ``storm_key`` fires a retry storm of failed requests (429 upstream
  saturation, then token quota exhausted) on ``anchor - 10 days``, 03:00-05:00 UTC.
- prompt-cache hit rates drop sharply from ``anchor - 30 days`` on.

Money is exact: gateway events carry the New API / One API ``quota`` integer (providers.md §1.9)
and ``cost = quota / quota_per_unit``; the others carry ``cost`` = tokens x list price.
"""

from __future__ import annotations

import math
import random
import threading
from bisect import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from itertools import accumulate
from operator import itemgetter
from statistics import NormalDist
from typing import NamedTuple

from .world import DEFAULT_WORLD, Price, World, WorldAccount, WorldKey, price_for

HOUR = 3600
DAY = 86400

# Relative traffic per UTC hour: UTC+8 office hours, a lunch dip, then US hours.
HOUR_WEIGHTS = (3, 6, 8, 9, 9, 7, 8, 8, 7, 6, 4, 3, 2, 2, 5, 7, 8, 8, 7, 7, 6, 5, 4, 3)
_HOUR_WEIGHT_SUM = sum(HOUR_WEIGHTS)
WEEKEND_FACTOR = 0.45
DAILY_GROWTH = 0.004
REASONING_MODELS = frozenset({"o3", "o4-mini", "deepseek-reasoner"})
STORM_DAYS_AGO = 10
STORM_HOURS = (3, 4)
STORM_REQUESTS_PER_HOUR = 750
CACHE_DROP_DAYS_AGO = 30


_FROMTS = datetime.fromtimestamp
# tuple.__new__ skips NamedTuple's Python-level __new__: a third of the per-request cost.
_new = tuple.__new__
_TS_SEQ = itemgetter(1, 2)


class SimEvent(NamedTuple):
    """One request (``bucket_seconds == 0``) or one hourly bucket of requests for a key x model.

    Token convention as in usage.models: ``input_tokens`` includes cache reads and writes,
    ``output_tokens`` includes reasoning. Failed requests (``status == "error"``) carry no
    tokens and no cost. ``quota`` is set for gateway accounts only.
    """

    account_slug: str
    ts: int
    seq: int
    model: str
    key_external_id: str
    key_name: str
    project_slug: str | None
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    requests: int
    bucket_seconds: int
    # List-priced accounts: exact cost in 1e-12 currency units. Gateways: 0 (cost comes from quota).
    cost_pico: int
    currency: str
    quota: int | None
    quota_per_unit: int
    status: str
    error_code: str
    latency_ms: int
    first_token_ms: int
    is_stream: bool

    # occurred_at and cost are computed on access: storing them costs a third of the generation
    # time and memory of a 90-day world.
    @property
    def occurred_at(self) -> datetime:
        return _FROMTS(self.ts, UTC)

    @property
    def cost(self) -> Decimal:
        if self.quota is not None:
            return Decimal(self.quota) / Decimal(self.quota_per_unit)
        return Decimal(self.cost_pico).scaleb(-12)

    @property
    def uncached_input_tokens(self) -> int:
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens


@dataclass(frozen=True)
class SimTopUp:
    """A credit added to a prepaid account. ``amount`` is in the account currency."""

    account_slug: str
    occurred_at: datetime
    ts: int
    amount: Decimal
    quota: int | None
    status: str
    trade_no: str
    payment_method: str
    # What was paid, in the payment currency (CNY via alipay/wxpay, like most resellers).
    money: Decimal
    completed_ts: int


def default_anchor() -> date:
    return datetime.now(UTC).date()


def _epoch(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("naive datetime: the simulator works in aware UTC datetimes")
    return int(value.timestamp())


def opened_at(world: World, anchor: date) -> int:
    """Unix time the world's accounts opened; nothing happens before it."""
    day = anchor - timedelta(days=world.history_days)
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _day_start(anchor: date) -> int:
    return int(datetime(anchor.year, anchor.month, anchor.day, tzinfo=UTC).timestamp())


# --- exact pricing --------------------------------------------------------------------------

_MICRO = 1_000_000
_TWO_MICRO = 2 * _MICRO


def _micro(value: Decimal | None) -> int:
    """Price per 1M tokens in millionths of the currency unit (all list prices are whole micros)."""
    return int(value * _MICRO) if value is not None else 0


class _Rates(NamedTuple):
    inp: int
    out: int
    read: int
    write: int
    has_cache: bool


def _rates(price: Price) -> _Rates:
    return _Rates(
        _micro(price.input),
        _micro(price.output),
        _micro(price.cache_read),
        _micro(price.cache_write),
        price.cache_read is not None,
    )


def newapi_quota(rates: _Rates, prompt: int, cached: int, completion: int) -> int:
    """New API: round(((prompt - cached) + cached*cache_ratio + completion*completion_ratio) * model_ratio).

    model_ratio = input price / 2 per 1M, so quota = sum(tokens x price per 1M) / 2, rounded half up;
    group ratio 1; at least 1 for a request that used tokens.
    """
    numerator = (prompt - cached) * rates.inp + cached * rates.read + completion * rates.out
    if numerator == 0:
        return 0
    return max(1, (numerator + _MICRO) // (2 * _MICRO))


def oneapi_quota(rates: _Rates, prompt: int, completion: int) -> int:
    """One API: ceil((prompt + completion*completion_ratio) * model_ratio); no cache discount."""
    numerator = prompt * rates.inp + completion * rates.out
    if numerator == 0:
        return 0
    return max(1, -(-numerator // (2 * _MICRO)))


def list_cost_pico(rates: _Rates, uncached: int, read: int, write: int, output: int) -> int:
    """Exact cost at list price in 1e-12 currency units: tokens x (price per 1M in micros)."""
    return uncached * rates.inp + read * rates.read + write * rates.write + output * rates.out


def list_cost(rates: _Rates, uncached: int, read: int, write: int, output: int) -> Decimal:
    """Exact cost at list price: tokens x price per 1M / 1M."""
    return Decimal(list_cost_pico(rates, uncached, read, write, output)).scaleb(-12)


def quota_cost(quota: int, quota_per_unit: int) -> Decimal:
    return Decimal(quota) / Decimal(quota_per_unit)


# --- account profiles -----------------------------------------------------------------------


class _KeyProfile(NamedTuple):
    key: WorldKey
    models: tuple[str, ...]
    model_cum: tuple[int, ...]


class _Profile(NamedTuple):
    account: WorldAccount
    keys: tuple[_KeyProfile, ...]
    key_cum: tuple[int, ...]
    rates: dict[str, _Rates]
    storm_key: WorldKey | None


@lru_cache(maxsize=64)
def _profile(world: World, slug: str) -> _Profile:
    account = world.account(slug)
    mix = dict(account.model_mix)
    keys = []
    for key in account.keys:
        models = key.models or tuple(mix)
        weights = [mix.get(model, 10) for model in models]
        keys.append(_KeyProfile(key, models, tuple(accumulate(weights))))
    rates = {model: _rates(price_for(account, model)) for model in mix}
    for kp in keys:
        for model in kp.models:
            rates.setdefault(model, _rates(price_for(account, model)))
    storm = next((k for k in account.keys if k.external_id == account.storm_key), None)
    return _Profile(account, tuple(keys), tuple(accumulate(k.weight for k in account.keys)), rates, storm)


def _volume(account: WorldAccount, hour_ts: int, anchor_ts: int, rng: random.Random) -> float:
    """Expected requests in this hour, before per-hour noise."""
    day_ts = hour_ts - hour_ts % DAY
    days_from_window = (day_ts - (anchor_ts - 90 * DAY)) / DAY
    growth = max(0.6, 1 + DAILY_GROWTH * days_from_window)
    weekday = datetime.fromtimestamp(day_ts, UTC).weekday()
    weekly = WEEKEND_FACTOR if weekday >= 5 else 1.0
    # A per-day wobble shared by all hours of the day (its own stream, so hours stay independent).
    day_noise = random.Random(f"day:{account.slug}:{day_ts}").uniform(0.85, 1.15)
    hour_of_day = (hour_ts % DAY) // HOUR
    share = HOUR_WEIGHTS[hour_of_day] / _HOUR_WEIGHT_SUM
    return account.daily_requests * growth * weekly * day_noise * share * rng.uniform(0.85, 1.15)


# Log-normal token counts by table lookup: random.gauss is the slowest step of generating a request.
_QUANTILES = 4096
_Z = [NormalDist().inv_cdf((i + 0.5) / _QUANTILES) for i in range(_QUANTILES)]
_PROMPT_SPREAD = tuple(math.exp(0.9 * z) for z in _Z)
_COMPLETION_SPREAD = tuple(math.exp(0.8 * z) for z in _Z)


def _cache_rate(hour_ts: int, anchor_ts: int) -> float:
    return 0.15 if hour_ts >= anchor_ts - CACHE_DROP_DAYS_AGO * DAY else 0.55


def _pick(cum: tuple[int, ...], rng: random.Random) -> int:
    return bisect(cum, rng.random() * cum[-1])


# --- generation -----------------------------------------------------------------------------


# Hours kept per process: three (seed, anchor) worlds of 100 days for six accounts, ~150 MB each.
_HOUR_CACHE = 45_000


@lru_cache(maxsize=_HOUR_CACHE)
def hour_events(world: World, slug: str, seed: int, anchor: date, hour_ts: int) -> tuple[SimEvent, ...]:
    """All events of one account in the hour starting at ``hour_ts``, in time order."""
    if hour_ts % HOUR:
        raise ValueError("hour_ts must be on an hour boundary")
    if hour_ts < opened_at(world, anchor):
        return ()
    profile = _profile(world, slug)
    anchor_ts = _day_start(anchor)
    rng = random.Random(f"{seed}:{anchor.isoformat()}:{slug}:{hour_ts}")
    if profile.account.is_gateway:
        events = _gateway_hour(profile, hour_ts, anchor_ts, rng)
    else:
        events = _bucket_hour(profile, hour_ts, anchor_ts, rng)
    return tuple(events)


def _gateway_hour(profile: _Profile, hour_ts: int, anchor_ts: int, rng: random.Random) -> list[SimEvent]:
    account = profile.account
    slug, currency = account.slug, account.currency
    qpu = account.quota_per_unit
    newapi = account.kind == "newapi"
    n = int(_volume(account, hour_ts, anchor_ts, rng) + rng.random())
    cache_rate = _cache_rate(hour_ts, anchor_ts)
    p_median, c_median = account.prompt_median, account.completion_median
    rand = rng.random
    keys = profile.keys
    key_cum = profile.key_cum
    key_total = key_cum[-1]
    rates_by_model = profile.rates
    events: list[SimEvent] = []
    append = events.append
    for i in range(n):
        ts = hour_ts + int(rand() * HOUR)
        kp = keys[bisect(key_cum, rand() * key_total)]
        key = kp.key
        model = kp.models[bisect(kp.model_cum, rand() * kp.model_cum[-1])]
        rates = rates_by_model[model]
        prompt = 8 + int(p_median * _PROMPT_SPREAD[int(rand() * _QUANTILES)])
        if prompt > 120_000:
            prompt = 120_000
        completion = 1 + int(c_median * _COMPLETION_SPREAD[int(rand() * _QUANTILES)])
        if completion > 16_000:
            completion = 16_000
        cached = 0
        if newapi and rates.has_cache and prompt >= 1024 and rand() < cache_rate:
            cached = int(prompt * (0.4 + 0.55 * rand())) // 128 * 128
        reasoning = int(completion * (0.3 + 0.4 * rand())) if model in REASONING_MODELS else 0
        first_token = 250 + int(rand() * 900)
        latency = first_token + completion * (8 + int(rand() * 20))
        # The quota formulas of newapi_quota / oneapi_quota, inlined: this loop runs 200k times per
        # simulated quarter. One API has no cache discount and does not report cached tokens.
        if newapi:
            quota = (
                (prompt - cached) * rates.inp + cached * rates.read + completion * rates.out + _MICRO
            ) // _TWO_MICRO
        else:
            quota = -(-(prompt * rates.inp + completion * rates.out) // _TWO_MICRO)
        if quota < 1:
            quota = 1  # every request here used tokens
        append(
            _new(
                SimEvent,
                (
                    slug,
                    ts,
                    i,
                    model,
                    key.external_id,
                    key.name,
                    key.project_slug,
                    prompt,
                    cached,
                    0,
                    completion,
                    reasoning,
                    1,
                    0,
                    0,
                    currency,
                    quota,
                    qpu,
                    "success",
                    "",
                    latency,
                    first_token,
                    rand() < 0.72,
                ),
            )
        )
    storm = profile.storm_key
    if storm is not None and newapi and _is_storm_hour(hour_ts, anchor_ts):
        model = "gpt-4o-mini"
        first_storm_hour = (hour_ts % DAY) // HOUR == STORM_HOURS[0]
        for j in range(STORM_REQUESTS_PER_HOUR):
            # Retries bunch up: most fall in the first half of the hour.
            ts = hour_ts + min(HOUR - 1, int((rand() ** 1.7) * HOUR))
            code = "upstream_rate_limited" if first_storm_hour and j % 5 < 3 else "token_quota_exhausted"
            append(
                _new(
                    SimEvent,
                    (
                        slug,
                        ts,
                        n + j,
                        model,
                        storm.external_id,
                        storm.name,
                        storm.project_slug,
                        0,
                        0,
                        0,
                        0,
                        0,
                        1,
                        0,
                        0,
                        currency,
                        0,
                        qpu,
                        "error",
                        code,
                        40 + int(rand() * 200),
                        0,
                        False,
                    ),
                )
            )
    events.sort(key=_TS_SEQ)
    return events


def _is_storm_hour(hour_ts: int, anchor_ts: int) -> bool:
    storm_day = anchor_ts - STORM_DAYS_AGO * DAY
    return storm_day <= hour_ts < storm_day + DAY and (hour_ts - storm_day) // HOUR in STORM_HOURS


def _bucket_hour(profile: _Profile, hour_ts: int, anchor_ts: int, rng: random.Random) -> list[SimEvent]:
    account = profile.account
    slug = account.slug
    expected = _volume(account, hour_ts, anchor_ts, rng)
    cache_rate = _cache_rate(hour_ts, anchor_ts)
    anthropic = account.kind == "anthropic"
    mean_p = account.prompt_median * math.exp(0.9**2 / 2)
    mean_c = account.completion_median * math.exp(0.8**2 / 2)
    key_total = profile.key_cum[-1]
    events = []
    seq = 0
    for kp in profile.keys:
        key_share = kp.key.weight / key_total
        model_total = kp.model_cum[-1]
        previous = 0
        for model, cum in zip(kp.models, kp.model_cum, strict=True):
            share = key_share * (cum - previous) / model_total
            previous = cum
            n = int(expected * share * rng.uniform(0.7, 1.3) + rng.random())
            if n == 0:
                continue
            rates = profile.rates[model]
            prompt = int(n * mean_p * rng.uniform(0.8, 1.2))
            output = int(n * mean_c * rng.uniform(0.8, 1.2))
            read = write = 0
            if rates.has_cache:
                read = int(prompt * cache_rate * rng.uniform(0.6, 1.1))
                if anthropic:
                    write = int(prompt * rng.uniform(0.02, 0.08))
            reasoning = int(output * rng.uniform(0.3, 0.6)) if model in REASONING_MODELS else 0
            pico = list_cost_pico(rates, prompt - read - write, read, write, output)
            events.append(
                SimEvent(
                    slug,
                    hour_ts,
                    seq,
                    model,
                    kp.key.external_id,
                    kp.key.name,
                    kp.key.project_slug,
                    prompt,
                    read,
                    write,
                    output,
                    reasoning,
                    n,
                    HOUR,
                    pico,
                    account.currency,
                    None,
                    0,
                    "success",
                    "",
                    0,
                    0,
                    False,
                )
            )
            seq += 1
    return events


def events_for(
    account_slug: str,
    start: datetime,
    end: datetime,
    *,
    seed: int = 7,
    world: World = DEFAULT_WORLD,
    anchor: date | None = None,
) -> list[SimEvent]:
    """Return the account's events with ``start <= occurred_at < end``, oldest first.

    Bucketed accounts report an hour's bucket at the hour start, so a window that starts
    mid-hour leaves that hour's buckets out.
    """
    anchor = anchor or default_anchor()
    start_ts, end_ts = _epoch(start), _epoch(end)
    hour = start_ts - start_ts % HOUR
    out: list[SimEvent] = []
    while hour < end_ts:
        chunk = hour_events(world, account_slug, seed, anchor, hour)
        if chunk and (hour < start_ts or hour + HOUR > end_ts):
            out.extend(e for e in chunk if start_ts <= e.ts < end_ts)
        else:
            out.extend(chunk)
        hour += HOUR
    return out


def revised(event: SimEvent, factor: Decimal, world: World = DEFAULT_WORLD) -> SimEvent:
    """The event as a provider revision would restate it: tokens x factor, money recomputed."""
    if event.status != "success":
        return event
    account = world.account(event.account_slug)

    def scale(value: int) -> int:
        return int((Decimal(value) * factor).to_integral_value())

    prompt, read, write = (
        scale(event.input_tokens),
        scale(event.cache_read_tokens),
        scale(event.cache_write_tokens),
    )
    output, reasoning = scale(event.output_tokens), scale(event.reasoning_tokens)
    requests = max(1, scale(event.requests)) if event.bucket_seconds else event.requests
    rates = _profile(world, event.account_slug).rates[event.model]
    quota, pico = event.quota, 0
    if account.kind == "newapi":
        quota = newapi_quota(rates, prompt, read, output)
    elif account.kind == "oneapi":
        quota = oneapi_quota(rates, prompt, output)
    else:
        pico = list_cost_pico(rates, prompt - read - write, read, write, output)
    return event._replace(
        input_tokens=prompt,
        cache_read_tokens=read,
        cache_write_tokens=write,
        output_tokens=output,
        reasoning_tokens=reasoning,
        requests=requests,
        quota=quota,
        cost_pico=pico,
    )


def model_rates(world: World, account_slug: str, model: str) -> _Rates:
    return _profile(world, account_slug).rates[model]


# --- balances and top-ups -------------------------------------------------------------------


class HourTotals(NamedTuple):
    requests: int  # successful requests (bucket counts summed)
    quota: int
    cost: Decimal
    rows: int  # log rows / buckets, failed requests included
    success_rows: int


def totals_of(events: Sequence[SimEvent]) -> HourTotals:
    ok = [e for e in events if e.status == "success"]
    return HourTotals(
        sum(e.requests for e in ok), sum(e.quota or 0 for e in ok), total_cost(ok), len(events), len(ok)
    )


@lru_cache(maxsize=_HOUR_CACHE)
def hour_totals(world: World, slug: str, seed: int, anchor: date, hour_ts: int) -> HourTotals:
    return totals_of(hour_events(world, slug, seed, anchor, hour_ts))


def hour_spend(world: World, slug: str, seed: int, anchor: date, hour_ts: int) -> Decimal:
    return hour_totals(world, slug, seed, anchor, hour_ts).cost


def total_cost(events: Iterable[SimEvent]) -> Decimal:
    """Exact sum of the events' costs, adding integers and dividing once."""
    quota = pico = 0
    quota_per_unit = 0
    for event in events:
        if event.quota is not None:
            quota += event.quota
            quota_per_unit = event.quota_per_unit
        else:
            pico += event.cost_pico
    cost = Decimal(pico).scaleb(-12)
    if quota:
        cost += Decimal(quota) / Decimal(quota_per_unit)
    return cost


def day_spend(world: World, slug: str, seed: int, anchor: date, day_ts: int) -> Decimal:
    return sum((hour_spend(world, slug, seed, anchor, day_ts + h * HOUR) for h in range(24)), Decimal(0))


_TOPUPS: dict[tuple[World, str, int, date], list[SimTopUp]] = {}
_TOPUP_DAYS: dict[tuple[World, str, int, date], tuple[int, Decimal]] = {}
# Server threads extend the same top-up history; one at a time, or days would be counted twice.
_TOPUP_LOCK = threading.Lock()


def topups_for(
    account_slug: str,
    until: datetime,
    *,
    seed: int = 7,
    world: World = DEFAULT_WORLD,
    anchor: date | None = None,
) -> list[SimTopUp]:
    """Top-ups from account opening up to ``until``, oldest first (failed attempts included).

    A top-up happens at the start of a day whose opening balance is below about four days of
    recent spend; the decision only looks at earlier days, so the list extends deterministically.
    """
    anchor = anchor or default_anchor()
    account = world.account(account_slug)
    if account.topup_amount <= 0:
        return []
    with _TOPUP_LOCK:
        return _extend_topups(world, account, seed, anchor, _epoch(until))


def _extend_topups(
    world: World, account: WorldAccount, seed: int, anchor: date, until_ts: int
) -> list[SimTopUp]:
    account_slug = account.slug
    cache_key = (world, account_slug, seed, anchor)
    done = _TOPUPS.setdefault(cache_key, [])
    day_ts, balance = _TOPUP_DAYS.get(cache_key, (opened_at(world, anchor), account.opening_balance))
    recent: list[Decimal] = []
    if day_ts <= until_ts:
        # Rebuild the recent-spend window for continuing a cached run.
        for back in range(7, 0, -1):
            prior = day_ts - back * DAY
            if prior >= opened_at(world, anchor):
                recent.append(day_spend(world, account_slug, seed, anchor, prior))
    while day_ts <= until_ts:
        rng = random.Random(f"topup:{seed}:{anchor.isoformat()}:{account_slug}:{day_ts}")
        average = sum(recent[-7:], Decimal(0)) / max(1, len(recent[-7:]))
        if balance < average * 4 or balance < account.topup_amount / 4:
            units = 1
            while balance + account.topup_amount * units < average * 8:
                units += 1
            amount = account.topup_amount * units
            ts = day_ts + 2 * HOUR + int(rng.random() * 5 * HOUR)
            if rng.random() < 0.2:
                # An abandoned checkout first: listed, never credited.
                done.append(_topup(account, ts - 600, amount, "expired", rng))
            done.append(_topup(account, ts, amount, "success", rng))
            balance += amount
        spent = day_spend(world, account_slug, seed, anchor, day_ts)
        balance -= spent
        recent.append(spent)
        day_ts += DAY
    _TOPUP_DAYS[cache_key] = (day_ts, balance)
    return [t for t in done if t.ts <= until_ts]


def _topup(account: WorldAccount, ts: int, amount: Decimal, status: str, rng: random.Random) -> SimTopUp:
    qpu = account.quota_per_unit if account.is_gateway else None
    quota = int(amount * qpu) if qpu else None
    method = "alipay" if rng.random() < 0.6 else "wxpay"
    return SimTopUp(
        account.slug,
        datetime.fromtimestamp(ts, UTC),
        ts,
        amount,
        quota,
        status,
        f"USR{42 if account.newapi_user_id else 7}NO{ts}{int(rng.random() * 10**6):06d}",
        method,
        # Resellers sell USD credit for CNY at about 7.3.
        (amount * Decimal("7.3")).quantize(Decimal("0.01")) if account.currency == "USD" else amount,
        ts + 60 if status == "success" else 0,
    )
