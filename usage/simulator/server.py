"""A loopback HTTP server that speaks each simulated account's provider API (shared/docs/providers.md).

``ProviderSimulator`` serves every account of a world under ``/<account slug>/``: New API and
One API dashboards, the OpenAI and Anthropic admin usage/cost APIs, DeepSeek's balance and
OpenRouter's credits/key/activity. Data comes from ``generator.py``, as seen at the simulator's
clock: per-request rows appear at their second, hourly buckets once the hour is over.

Tests steer it with faults (``inject``), provider revisions (``revise``), duplicate rows
(``twins``, ``late_rows``) and read the truth back from the oracle methods
(``expected_usage``, ``expected_quota``, ``balance``).
"""

from __future__ import annotations

import base64
import bisect
import gzip
import json
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import generator
from .generator import DAY, HOUR, SimEvent, SimTopUp
from .world import DEFAULT_WORLD, World, WorldAccount, price_for

FAULT_MODES = frozenset(
    {
        "rate_limit",
        "server_error",
        "bad_gateway_html",
        "stall",
        "drip",
        "truncated",
        "success_false",
        "unauthorized",
        "forbidden",
        "huge",
        "disconnect",
    }
)
HUGE_BYTES = 5 * 1024 * 1024
NEWAPI_USERNAME = "alice"


class SimClock:
    """A settable clock for tests: ``ProviderSimulator(clock=SimClock(t))`` then ``clock.advance(...)``."""

    def __init__(self, now: datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("SimClock needs an aware datetime")
        self._now = now
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, now: datetime) -> None:
        with self._lock:
            self._now = now

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now


@dataclass
class ExpectedTotals:
    """What an ingest of one (UTC day, model) should add up to.

    ``requests`` counts successful requests (bucket counts summed); failed requests are in
    ``errors`` (New API error logs only). ``rows`` is the number of provider rows (log lines or
    hourly key x model buckets). For gateways ``cost = quota / quota_per_unit``. Anthropic's
    usage report carries no request count, so its ``requests`` is the simulator's own truth.
    """

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = field(default_factory=lambda: Decimal(0))
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    errors: int = 0
    quota: int | None = None
    rows: int = 0


@dataclass(frozen=True)
class BalanceState:
    """An account's balance at the simulator's now, in currency units (raw quota for gateways)."""

    remaining: Decimal
    used: Decimal
    topped_up: Decimal
    currency: str
    quota: int | None = None
    used_quota: int | None = None
    request_count: int = 0


@dataclass(frozen=True)
class RequestRecord:
    account_slug: str
    method: str
    path: str
    query: str
    status: int
    at: float  # time.monotonic()
    fault: str = ""


@dataclass
class _Fault:
    mode: str
    remaining: int
    params: dict[str, Any]


class _Reply(Exception):
    """Raised by handlers to answer with a non-200 (or an enveloped failure) right away."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}


# --- JSON with exact decimals ------------------------------------------------------------------


def _num(value: Decimal) -> float:
    """A Decimal as a JSON number. Refuses values a double cannot carry exactly (> 15 digits)."""
    as_float = float(value)
    if Decimal(repr(as_float)) != value:
        raise ValueError(f"{value} does not survive as a JSON number")
    return as_float


def _to_json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _num(value)
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    return value


def _dumps(value: Any) -> bytes:
    return json.dumps(_to_json(value), ensure_ascii=False, separators=(",", ":")).encode()


def _ratio(value: Decimal) -> Decimal:
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal == normal.to_integral_value() else normal


def _cents_str(usd: Decimal) -> str:
    cents = (usd * 100).normalize()
    if cents.as_tuple().exponent > -4:  # type: ignore[operator]
        cents = cents.quantize(Decimal("0.0001"))
    return f"{cents:f}"


def _rfc3339(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cursor(ts: int) -> str:
    return "page_" + base64.urlsafe_b64encode(str(ts).encode()).decode().rstrip("=")


def _uncursor(page: str) -> int:
    raw = page.removeprefix("page_")
    return int(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode())


def _like(pattern: str) -> re.Pattern[str]:
    """SQL LIKE (``%`` and ``_`` wildcards) as a regex, as New API filters model_name."""
    parts = [".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern]
    return re.compile("^" + "".join(parts) + "$", re.DOTALL)


_DISPLAY = {
    "claude-sonnet-4-5": "Claude Sonnet 4.5",
    "claude-haiku-4-5": "Claude Haiku 4.5",
    "claude-opus-4-6": "Claude Opus 4.6",
}
_CHANNELS = {"gpt": 3, "o4": 3, "o3": 3, "claude": 7, "deepseek": 9, "gemini": 12}
_OPENROUTER_PROVIDERS = {
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "deepseek": "DeepSeek",
    "google": "Google",
}


class _Request:
    """The parts of an HTTP request a provider handler needs."""

    def __init__(self, method: str, path: str, query: str, headers: Any) -> None:
        self.method = method
        self.path = path
        self.query_string = query
        self.params = parse_qs(query, keep_blank_values=True)
        self.headers = headers

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.params.get(name)
        return values[0] if values else default

    def many(self, name: str) -> list[str]:
        """Array params in every spelling providers accept: repeated, ``name[]`` and comma lists."""
        values = self.params.get(name, []) + self.params.get(name + "[]", [])
        return [part for value in values for part in value.split(",") if part]

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return str(value) if value is not None else None


class ProviderSimulator:
    """Serve the simulated world over HTTP on loopback; steer it and read its truth in tests."""

    def __init__(
        self,
        world: World = DEFAULT_WORLD,
        seed: int = 7,
        clock: Callable[[], datetime] | datetime | None = None,
        *,
        anchor: date | None = None,
    ) -> None:
        self.world = world
        self.seed = seed
        if isinstance(clock, datetime):
            clock = SimClock(clock)
        self._clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.anchor = anchor or self.now().date()
        self.opened_ts = generator.opened_at(world, self.anchor)
        self._lock = threading.RLock()
        self._faults: dict[str, list[_Fault]] = {}
        self._revisions: dict[tuple[str, int], Decimal] = {}
        self._extras: dict[tuple[str, int], list[SimEvent]] = {}
        self._hour_cache: dict[tuple[str, int], tuple[SimEvent, ...]] = {}
        self._hour_totals: dict[tuple[str, int], generator.HourTotals] = {}
        self._log_prefix: dict[str, dict[int, int]] = {}
        self._totals_prefix: dict[str, dict[int, tuple[int, int, Decimal]]] = {}
        self._totals_hours: dict[str, list[int]] = {}
        # The last few gateway log windows: a client paging through one window (100 rows a page)
        # would otherwise rebuild and sort the whole window for every page.
        self._log_rows_cache: dict[tuple[str, int, int, int], list[_LogRow]] = {}
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""
        self.request_log: list[RequestRecord] = []
        # Per-account response variants, e.g. {"reseller": "slim"} (see use_variant).
        self.variants: dict[str, str] = {}

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def clock(self) -> Callable[[], datetime]:
        return self._clock

    def now(self) -> datetime:
        return self._clock()

    def now_ts(self) -> int:
        return int(self.now().timestamp())

    def start(self, host: str = "127.0.0.1", port: int = 0, *, warm: bool = True) -> str:
        """Start serving in a daemon thread; return the base URL.

        ``warm`` generates every account's history first (a few seconds, once per process for a
        given seed and anchor), so no request pays for it against a client timeout.
        """
        if warm:
            self.warm()
        handler = type("Handler", (_Handler,), {"sim": self})
        self._stop.clear()
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        bound_host, bound_port = self._server.server_address[:2]
        host_text = bound_host.decode() if isinstance(bound_host, bytes) else str(bound_host)
        self.base_url = f"http://{host_text}:{bound_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="provider-simulator", daemon=True
        )
        self._thread.start()
        return self.base_url

    def warm(self) -> None:
        """Generate and total every account's history up to now."""
        for account in self.world.accounts:
            self.balance(account.slug)
            if account.is_gateway:
                _rows_before(self, account.slug, self.now_ts() - self.now_ts() % HOUR, self.now_ts())

    def stop(self) -> None:
        self._stop.set()  # releases stalled handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ProviderSimulator:
        if not self.base_url:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def account_url(self, slug: str) -> str:
        self.world.account(slug)
        return f"{self.base_url}/{slug}"

    # --- steering ---------------------------------------------------------------------------

    def inject(self, slug: str, mode: str, times: int = 1, **params: Any) -> None:
        """Make the account's next ``times`` requests fail with ``mode`` (see FAULT_MODES).

        Params: ``retry_after`` (rate_limit, default 7 s), ``seconds`` (stall, default 30 s),
        ``size`` (huge, default 5 MB), ``status`` (server_error, default 500), ``interval``
        (drip: the real answer sent one byte every ``interval`` seconds, default 1 s).
        """
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; one of {sorted(FAULT_MODES)}")
        self.world.account(slug)
        with self._lock:
            self._faults.setdefault(slug, []).append(_Fault(mode, times, params))

    def use_variant(self, slug: str, variant: str) -> None:
        """Switch an account to another build's response shape.

        ``"slim"`` (New API): the newest ``GetUserLogs`` DTO - no ``username``, ``group``,
        ``token_id``, ``channel``, ``ip``, and ``other`` as an embedded object (omitted when empty).
        """
        if variant not in ("slim", "default"):
            raise ValueError(f"unknown variant {variant!r}")
        self.world.account(slug)
        self.variants[slug] = variant

    def clear_faults(self, slug: str | None = None) -> None:
        with self._lock:
            if slug is None:
                self._faults.clear()
            else:
                self._faults.pop(slug, None)

    def revise(self, slug: str, hour: datetime, factor: Decimal | int | str) -> None:
        """Restate every event of the account in that hour: tokens x factor, money recomputed."""
        hour_ts = self._hour_of(hour)
        with self._lock:
            self._revisions[(slug, hour_ts)] = Decimal(factor)
            self._invalidate(slug)

    def twins(self, slug: str, at: datetime) -> tuple[SimEvent, SimEvent]:
        """Add two identical successful rows in the second ``at`` (distinct requests, same natural key)."""
        template = self._synthetic(slug, at, "twin")
        self._add_extras(slug, [template, template])
        return template, template

    def late_rows(self, slug: str, at: datetime, count: int = 1) -> list[SimEvent]:
        """Add ``count`` distinct successful rows at ``at`` (a provider adding rows to the past)."""
        rows = [self._synthetic(slug, at + timedelta(seconds=i), f"late{i}") for i in range(count)]
        self._add_extras(slug, rows)
        return rows

    def _add_extras(self, slug: str, rows: list[SimEvent]) -> None:
        with self._lock:
            for row in rows:
                hour_ts = row.ts - row.ts % HOUR
                existing = self._extras.setdefault((slug, hour_ts), [])
                existing.append(row._replace(seq=1_000_000 + len(existing)))
            self._invalidate(slug)

    def _synthetic(self, slug: str, at: datetime, salt: str) -> SimEvent:
        account = self.world.account(slug)
        ts = int(at.timestamp())
        if not account.is_gateway:
            ts -= ts % HOUR
        kp = account.keys[0]
        model = kp.models[0] if kp.models else account.model_mix[0][0]
        rates = generator.model_rates(self.world, slug, model)
        prompt, completion = 1000 + len(salt) * 37, 200 + ts % 97
        requests = 1 if account.is_gateway else 3
        quota: int | None = None
        pico = 0
        if account.kind == "newapi":
            quota = generator.newapi_quota(rates, prompt, 0, completion)
        elif account.kind == "oneapi":
            quota = generator.oneapi_quota(rates, prompt, completion)
        else:
            pico = generator.list_cost_pico(rates, prompt, 0, 0, completion)
        return SimEvent(
            slug,
            ts,
            0,
            model,
            kp.external_id,
            kp.name,
            kp.project_slug,
            prompt,
            0,
            0,
            completion,
            0,
            requests,
            0 if account.is_gateway else HOUR,
            pico,
            account.currency,
            quota,
            account.quota_per_unit if account.is_gateway else 0,
            "success",
            "",
            1500,
            400,
            False,
        )

    def _invalidate(self, slug: str) -> None:
        for cache in (self._hour_cache, self._hour_totals):
            for key in [k for k in cache if k[0] == slug]:
                del cache[key]
        for window in [k for k in self._log_rows_cache if k[0].split("|")[0] == slug]:
            del self._log_rows_cache[window]
        self._log_prefix.pop(slug, None)
        self._totals_prefix.pop(slug, None)
        self._totals_hours.pop(slug, None)

    @staticmethod
    def _hour_of(value: datetime) -> int:
        ts = int(value.timestamp())
        return ts - ts % HOUR

    # --- data as the provider holds it ------------------------------------------------------

    def _hour(self, slug: str, hour_ts: int) -> tuple[SimEvent, ...]:
        """One hour of the account's events, after revisions and added rows."""
        key = (slug, hour_ts)
        cached = self._hour_cache.get(key)
        if cached is not None:
            return cached
        with self._lock:
            events = generator.hour_events(self.world, slug, self.seed, self.anchor, hour_ts)
            factor = self._revisions.get(key)
            if factor is not None:
                events = tuple(generator.revised(e, factor, self.world) for e in events)
            extras = self._extras.get(key)
            if extras:
                events = tuple(sorted((*events, *extras), key=lambda e: (e.ts, e.seq)))
            self._hour_cache[key] = events
            return events

    def _visible(self, event: SimEvent, now_ts: int) -> bool:
        return event.ts + event.bucket_seconds <= now_ts

    def events(self, slug: str, start: datetime, end: datetime) -> list[SimEvent]:
        """The account's events with ``start <= occurred_at < end`` that the provider shows now."""
        return list(self._events(slug, int(start.timestamp()), int(end.timestamp()), self.now_ts()))

    def _events(self, slug: str, start_ts: int, end_ts: int, now_ts: int) -> Iterator[SimEvent]:
        start_ts = max(start_ts, self.opened_ts)
        hour = start_ts - start_ts % HOUR
        while hour < end_ts and hour <= now_ts:
            for event in self._hour(slug, hour):
                if start_ts <= event.ts < end_ts and self._visible(event, now_ts):
                    yield event
            hour += HOUR

    def _totals(self, slug: str, hour: int) -> generator.HourTotals:
        totals = self._hour_totals.get((slug, hour))
        if totals is None:
            if (slug, hour) in self._revisions or (slug, hour) in self._extras:
                totals = generator.totals_of(self._hour(slug, hour))
            else:  # untouched hours share one process-wide cache across simulators
                totals = generator.hour_totals(self.world, slug, self.seed, self.anchor, hour)
            self._hour_totals[(slug, hour)] = totals
        return totals

    def _totals_until(self, slug: str, now_ts: int) -> tuple[int, int, Decimal]:
        """(successful requests, quota, cost) from opening up to now.

        Sums of whole hours are remembered per hour start, so reading the balance at each step of
        a moving clock adds only the hours since the last reading.
        """
        current = now_ts - now_ts % HOUR
        with self._lock:
            prefix = self._totals_prefix.setdefault(slug, {})
            known = self._totals_hours.setdefault(slug, [])  # prefix's keys, sorted
            position = bisect.bisect_right(known, current)
            hour = known[position - 1] if position else self.opened_ts
            requests, quota, cost = prefix.get(hour, (0, 0, Decimal(0)))
            while hour < current:
                totals = self._totals(slug, hour)
                requests += totals.requests
                quota += totals.quota
                cost += totals.cost
                hour += HOUR
                if hour not in prefix:
                    prefix[hour] = (requests, quota, cost)
                    bisect.insort(known, hour)
        for event in self._hour(slug, current):
            if event.status == "success" and self._visible(event, now_ts):
                requests += event.requests
                quota += event.quota or 0
                cost += event.cost
        return requests, quota, cost

    def topups(self, slug: str) -> list[SimTopUp]:
        """Top-ups made up to now (including abandoned ones with status ``expired``)."""
        now = self.now()
        return generator.topups_for(slug, now, seed=self.seed, world=self.world, anchor=self.anchor)

    def balance(self, slug: str) -> BalanceState:
        """The balance the provider reports right now."""
        account = self.world.account(slug)
        now_ts = self.now_ts()
        requests, used_quota, used = self._totals_until(slug, now_ts)
        topped_up = sum((t.amount for t in self.topups(slug) if t.status == "success"), Decimal(0))
        if account.is_gateway:
            qpu = account.quota_per_unit
            topup_quota = sum(t.quota or 0 for t in self.topups(slug) if t.status == "success")
            quota = int(account.opening_balance * qpu) + topup_quota - used_quota
            return BalanceState(
                Decimal(quota) / qpu,
                Decimal(used_quota) / qpu,
                topped_up,
                account.currency,
                quota,
                used_quota,
                requests,
            )
        remaining = account.opening_balance + topped_up - used
        return BalanceState(remaining, used, topped_up, account.currency, None, None, requests)

    # --- oracle -----------------------------------------------------------------------------

    def expected_usage(
        self, slug: str, start: datetime, end: datetime
    ) -> dict[tuple[date, str], ExpectedTotals]:
        """Totals per (UTC day, model) of what the provider shows for ``start <= t < end`` now."""
        account = self.world.account(slug)
        out: dict[tuple[date, str], ExpectedTotals] = {}
        for event in self.events(slug, start, end):
            key = (event.occurred_at.date(), event.model)
            totals = out.get(key)
            if totals is None:
                totals = out[key] = ExpectedTotals(quota=0 if account.is_gateway else None)
            totals.rows += 1
            if event.status != "success":
                totals.errors += event.requests
                continue
            totals.requests += event.requests
            totals.input_tokens += event.input_tokens
            totals.output_tokens += event.output_tokens
            totals.cache_read_tokens += event.cache_read_tokens
            totals.cache_write_tokens += event.cache_write_tokens
            totals.reasoning_tokens += event.reasoning_tokens
            if totals.quota is not None:
                totals.quota += event.quota or 0
            else:
                totals.cost += event.cost
        if account.is_gateway:
            for totals in out.values():
                totals.cost = Decimal(totals.quota or 0) / Decimal(account.quota_per_unit)
        return out

    def expected_quota(self, slug: str, start: datetime, end: datetime) -> int:
        """Quota of consume rows with ``start <= created_at < end``.

        Equals ``/api/log/self/stat`` with ``start_timestamp=start`` and ``end_timestamp=end - 1``
        (the gateways' bounds are inclusive; this oracle is half-open like every other window here).
        """
        return sum(e.quota or 0 for e in self.events(slug, start, end) if e.status == "success")

    # --- request dispatch -------------------------------------------------------------------

    def _take_fault(self, slug: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(slug)
            while queue:
                fault = queue[0]
                if fault.remaining <= 0:
                    queue.pop(0)
                    continue
                fault.remaining -= 1
                if fault.remaining == 0:
                    queue.pop(0)
                return fault
            return None

    def handle(self, request: _Request) -> tuple[int, dict[str, str], Any]:
        """Route to the account's provider handler. Returns (status, headers, JSON-able body or bytes)."""
        parts = request.path.strip("/").split("/", 1)
        slug = parts[0]
        rest = "/" + (parts[1] if len(parts) > 1 else "")
        try:
            account = self.world.account(slug)
        except KeyError:
            return 404, {}, {"error": {"message": f"no simulated account {slug!r}"}}
        handler = _PROVIDERS[account.kind]
        try:
            return 200, {}, handler(self, account, rest, request)
        except _Reply as reply:
            return reply.status, reply.headers, reply.body


# --- provider handlers ---------------------------------------------------------------------------

Handler = Callable[[ProviderSimulator, WorldAccount, str, _Request], Any]


def _int_param(request: _Request, name: str, default: int | None = None) -> int | None:
    raw = request.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        return default


def _gateway_fail(message: str) -> _Reply:
    return _Reply(200, {"success": False, "message": message})


def _gateway_auth(sim: ProviderSimulator, account: WorldAccount, request: _Request) -> None:
    """UserAuth: access token in Authorization (``Bearer `` optional); New API also New-Api-User."""
    raw = request.header("Authorization")
    if not raw:
        raise _Reply(401, {"success": False, "message": "无权进行此操作，未登录且未提供 access token"})
    token = raw.replace("Bearer ", "", 1).strip()
    if token != account.credential:
        raise _gateway_fail("无权进行此操作，access token 无效")
    if account.kind == "newapi":
        user = request.header("New-Api-User")
        if not user:
            raise _Reply(401, {"success": False, "message": "无权进行此操作，未提供 New-Api-User"})
        if not user.strip().isdigit():
            raise _Reply(401, {"success": False, "message": "无权进行此操作，New-Api-User 格式错误"})
        if int(user) != account.newapi_user_id:
            raise _Reply(401, {"success": False, "message": "无权进行此操作，New-Api-User 与登录用户不匹配"})


def _ok(data: Any) -> dict[str, Any]:
    return {"success": True, "message": "", "data": data}


@dataclass(frozen=True)
class _LogRow:
    ts: int
    seq: int
    type: int
    event: SimEvent | None
    topup: SimTopUp | None


def _log_rows(sim: ProviderSimulator, slug: str, start_ts: int, end_ts: int, now_ts: int) -> list[_LogRow]:
    """Gateway log rows with ``start_ts <= created_at <= end_ts`` (inclusive, as the gateways filter).

    The list is shared with later calls for the same window: callers must not change it.
    """
    key = (slug, start_ts, end_ts, now_ts)
    cached = sim._log_rows_cache.get(key)
    if cached is not None:
        return cached
    rows = _build_log_rows(sim, slug, start_ts, end_ts, now_ts)
    _remember_log_rows(sim, key, rows)
    return rows


def _remember_log_rows(sim: ProviderSimulator, key: tuple[str, int, int, int], rows: list[_LogRow]) -> None:
    with sim._lock:
        if len(sim._log_rows_cache) >= 16:  # a few windows are paged at a time: keep it small
            sim._log_rows_cache.clear()
        sim._log_rows_cache[key] = rows


def _build_log_rows(
    sim: ProviderSimulator, slug: str, start_ts: int, end_ts: int, now_ts: int
) -> list[_LogRow]:
    account = sim.world.account(slug)
    newapi = account.kind == "newapi"
    rows = [
        _LogRow(e.ts, e.seq, 2 if e.status == "success" else 5, e, None)
        for e in sim._events(slug, start_ts, end_ts + 1, now_ts)
        if newapi or e.status == "success"  # One API does not log failed requests
    ]
    for topup in sim.topups(slug):
        if topup.status == "success" and start_ts <= topup.ts <= min(end_ts, now_ts):
            rows.append(_LogRow(topup.ts, -1, 1, None, topup))
    rows.sort(key=lambda r: (r.ts, r.seq))
    return rows


def _log_ids(
    sim: ProviderSimulator, slug: str, rows: list[_LogRow], now_ts: int
) -> dict[tuple[int, int], int]:
    """Auto-increment ids for the given rows: 1 + every log row written before them since opening."""
    if not rows:
        return {}
    first_hour = rows[0].ts - rows[0].ts % HOUR
    before = _rows_before(sim, slug, first_hour, now_ts)
    hour_rows = _build_log_rows(sim, slug, first_hour, rows[-1].ts, now_ts)
    return {(r.ts, r.seq): before + i + 1 for i, r in enumerate(hour_rows)}


def _rows_before(sim: ProviderSimulator, slug: str, hour_ts: int, now_ts: int) -> int:
    """Log rows written before ``hour_ts`` (an hour start no later than now's hour)."""
    # prefix[h] = rows in the hours before h; every hour before now's hour is complete, so a
    # prefix never changes until twins/late rows/revisions invalidate the account.
    prefix = sim._log_prefix.setdefault(slug, {})
    if hour_ts in prefix:
        return prefix[hour_ts]
    hour = max((h for h in prefix if h < hour_ts), default=sim.opened_ts)
    count = prefix.get(hour, 0)
    newapi = sim.world.account(slug).kind == "newapi"
    topup_ts = [t.ts for t in sim.topups(slug) if t.status == "success"]
    while hour < hour_ts:
        prefix[hour] = count
        totals = sim._totals(slug, hour)
        count += totals.rows if newapi else totals.success_rows
        count += sum(1 for ts in topup_ts if hour <= ts < hour + HOUR)
        hour += HOUR
    if hour_ts <= now_ts - now_ts % HOUR:
        prefix[hour_ts] = count
    return count


def _newapi_other(sim: ProviderSimulator, account: WorldAccount, event: SimEvent) -> dict[str, Any]:
    if event.status != "success":
        status = 429 if event.error_code == "upstream_rate_limited" else 403
        return {"error_type": "new_api_error", "error_code": event.error_code, "status_code": status}
    rates = generator.model_rates(sim.world, account.slug, event.model)
    price = price_for(account, event.model)
    # Ratios are Go float64s in New API (8.333333333333334 for gemini-2.5-flash): floats on purpose.
    other: dict[str, Any] = {
        "model_ratio": float(_ratio(price.input / 2)),
        "completion_ratio": float(_ratio(price.output / price.input)),
        "group_ratio": 1,
        "cache_tokens": event.cache_read_tokens,
        "cache_ratio": float(_ratio(price.cache_read / price.input))
        if rates.has_cache and price.cache_read
        else 1,
        "model_price": -1,
        "frt": event.first_token_ms,
    }
    return other


_ERROR_CONTENT = {
    "upstream_rate_limited": "status_code=429, 当前分组上游负载已饱和，请稍后再试",
    "token_quota_exhausted": "status_code=403, 该令牌额度已用尽 TokenStatusExhausted[sk-bat***rk01]",
}


def _newapi_item(sim: ProviderSimulator, account: WorldAccount, row: _LogRow, log_id: int) -> dict[str, Any]:
    token_ids = {k.external_id: 11 + i for i, k in enumerate(account.keys)}
    base: dict[str, Any] = {
        "id": log_id % 1024,  # New API shows users id % 1024, never the real id
        "user_id": account.newapi_user_id,
        "created_at": row.ts,
        "type": row.type,
        "username": NEWAPI_USERNAME,
        "channel_name": "",
        "ip": "",
        "group": account.group,
    }
    if row.topup is not None:
        amount = row.topup.amount
        base.update(
            content=f"使用在线充值成功，充值金额: ${amount:.6f}，支付金额：{row.topup.money:.2f}",
            token_name="",
            model_name="",
            quota=0,
            prompt_tokens=0,
            completion_tokens=0,
            use_time=0,
            is_stream=False,
            channel=0,
            token_id=0,
            other="",
        )
        return base
    event = row.event
    assert event is not None
    other = _newapi_other(sim, account, event)
    if event.status == "success":
        content = (
            f"模型倍率 {other['model_ratio']:.2f}，补全倍率 {other['completion_ratio']:.2f}，分组倍率 1.00"
        )
    else:
        content = _ERROR_CONTENT.get(event.error_code, event.error_code)
    base.update(
        content=content,
        token_name=event.key_external_id,
        model_name=event.model,
        quota=event.quota or 0,
        prompt_tokens=event.input_tokens,
        completion_tokens=event.output_tokens,
        use_time=max(1, round(event.latency_ms / 1000)) if event.status == "success" else 0,
        is_stream=event.is_stream,
        channel=_channel(event.model),
        token_id=token_ids.get(event.key_external_id, 0),
        other=json.dumps(_to_json(other), separators=(",", ":")),
    )
    return base


_SLIM_FIELDS = (
    "id",
    "created_at",
    "type",
    "content",
    "token_name",
    "model_name",
    "channel_name",
    "quota",
    "prompt_tokens",
    "completion_tokens",
    "use_time",
    "is_stream",
)


def _slim(item: dict[str, Any]) -> dict[str, Any]:
    slim = {name: item[name] for name in _SLIM_FIELDS}
    if item["other"]:
        slim["other"] = json.loads(item["other"])
    return slim


def _channel(model: str) -> int:
    for prefix, channel in _CHANNELS.items():
        if model.startswith(prefix):
            return channel
    return 1


def _oneapi_item(sim: ProviderSimulator, account: WorldAccount, row: _LogRow) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 0,  # One API omits the id for users
        "user_id": 7,
        "created_at": row.ts,
        "type": row.type,
        "username": "legacy",
        "channel": 0,
        "request_id": "",
        "elapsed_time": 0,
        "is_stream": False,
        "system_prompt_reset": False,
    }
    if row.topup is not None:
        base.update(
            content=f"通过兑换码充值 ${row.topup.amount:.6f} 额度",
            token_name="",
            model_name="",
            quota=row.topup.quota or 0,
            prompt_tokens=0,
            completion_tokens=0,
        )
        return base
    event = row.event
    assert event is not None
    price = price_for(account, event.model)
    base.update(
        content=f"倍率：{_ratio(price.input / 2)} × 1 × {_ratio(price.output / price.input)}",
        token_name=event.key_external_id,
        model_name=event.model,
        quota=event.quota or 0,
        prompt_tokens=event.input_tokens,
        completion_tokens=event.output_tokens,
        channel=_channel(event.model),
        request_id=f"{datetime.fromtimestamp(event.ts, UTC):%Y%m%d%H%M%S}{event.seq:06d}{event.ts % 9973:04d}",
        elapsed_time=event.latency_ms,
        is_stream=event.is_stream,
    )
    return base


_FILTER_PARAMS = ("type", "token_name", "model_name", "group")


def _filtered_log_rows(
    sim: ProviderSimulator, account: WorldAccount, request: _Request, start: int, end: int, now_ts: int
) -> list[_LogRow]:
    """The window's log rows that pass the request's filters, newest first (as the gateways page).

    Cached like ``_log_rows`` (same key plus the filters): every page of one listing shares it, so
    callers must not change it.
    """
    filters = tuple(request.get(name) or "" for name in _FILTER_PARAMS)
    key = (f"{account.slug}|{'|'.join(filters)}", start, end, now_ts)
    cached = sim._log_rows_cache.get(key)
    if cached is not None:
        return cached
    keep = _log_filter(account, request)
    rows = [r for r in _log_rows(sim, account.slug, start, end, now_ts) if keep(r)]
    rows.reverse()  # id desc: newest first
    _remember_log_rows(sim, key, rows)
    return rows


def _log_filter(account: WorldAccount, request: _Request) -> Callable[[_LogRow], bool]:
    log_type = _int_param(request, "type", 0) or 0
    token_name = request.get("token_name") or ""
    model_name = request.get("model_name") or ""
    group = request.get("group") or ""
    model_re = _like(model_name) if model_name and account.kind == "newapi" else None

    def keep(row: _LogRow) -> bool:
        if log_type and row.type != log_type:
            return False
        name = row.event.key_external_id if row.event else ""
        model = row.event.model if row.event else ""
        if token_name and name != token_name:
            return False
        if model_name and not (model_re.match(model) if model_re else model == model_name):
            return False
        return not (group and group != account.group)

    return keep


def _window(sim: ProviderSimulator, request: _Request, now_ts: int) -> tuple[int, int]:
    start = _int_param(request, "start_timestamp", 0) or 0
    end = _int_param(request, "end_timestamp", 0) or 0
    return max(start, sim.opened_ts), min(end, now_ts) if end else now_ts


def _gateway(sim: ProviderSimulator, account: WorldAccount, path: str, request: _Request) -> Any:
    newapi = account.kind == "newapi"
    if path == "/api/status":
        data: dict[str, Any] = {
            "system_name": "LaoZhang API" if newapi else "One API",
            "version": "v0.6.11" if newapi else "v0.6.10",
            "quota_per_unit": account.quota_per_unit,
            "display_in_currency": True,
            "start_time": sim.opened_ts,
        }
        if newapi:
            data.update(quota_display_type="USD", usd_exchange_rate=7.3, price=7.3)
        return _ok(data)
    _gateway_auth(sim, account, request)
    now_ts = sim.now_ts()
    if path == "/api/user/self":
        return _ok(_gateway_user(sim, account))
    if path == "/api/log/self":
        start, end = _window(sim, request, now_ts)
        rows = _filtered_log_rows(sim, account, request, start, end, now_ts)
        if newapi:
            page = max(1, _int_param(request, "p", 1) or 1)
            size = (
                _int_param(request, "page_size")
                or _int_param(request, "ps")
                or _int_param(request, "size")
                or 10
            )
            size = max(1, min(100, size))
            chunk = rows[(page - 1) * size : page * size]
            ids = _log_ids(sim, account.slug, sorted(chunk, key=lambda r: (r.ts, r.seq)), now_ts)
            items = [_newapi_item(sim, account, r, ids[(r.ts, r.seq)]) for r in chunk]
            if sim.variants.get(account.slug) == "slim":
                items = [_slim(item) for item in items]
            return _ok({"page": page, "page_size": size, "total": len(rows), "items": items})
        page = max(0, _int_param(request, "p", 0) or 0)
        chunk = rows[page * 10 : page * 10 + 10]
        return _ok([_oneapi_item(sim, account, r) for r in chunk])
    if path == "/api/log/self/stat":
        start, end = _window(sim, request, now_ts)
        keep = _log_filter(account, request)
        consumed = [
            r for r in _log_rows(sim, account.slug, start, end, now_ts) if r.type == 2 and keep(_retype(r))
        ]
        quota = sum((r.event.quota or 0) for r in consumed if r.event)
        if not newapi:
            return _ok({"quota": quota})
        recent = [
            r.event
            for r in _log_rows(sim, account.slug, now_ts - 60, now_ts, now_ts)
            if r.type == 2 and r.event
        ]
        return _ok(
            {
                "quota": quota,
                "rpm": len(recent),
                "tpm": sum(e.input_tokens + e.output_tokens for e in recent),
            }
        )
    if path == "/api/user/topup/self" and newapi:
        page = max(1, _int_param(request, "p", 1) or 1)
        size = max(1, min(100, _int_param(request, "page_size") or 10))
        keyword = request.get("keyword") or ""
        topups = sim.topups(account.slug)
        items = [
            _topup_item(account, i + 1, t)
            for i, t in enumerate(topups)
            if t.ts >= now_ts - 30 * DAY and keyword in t.trade_no
        ]
        items.reverse()
        return _ok(
            {
                "page": page,
                "page_size": size,
                "total": len(items),
                "items": items[(page - 1) * size : page * size],
            }
        )
    if path == "/api/data/self" and newapi:
        start, end = _window(sim, request, now_ts)
        if end - start > 2_592_000:
            raise _gateway_fail("时间跨度不能超过 1 个月")
        return _ok(_newapi_quota_data(sim, account, start, end, now_ts))
    if path == "/api/user/dashboard" and not newapi:
        return _ok(_oneapi_dashboard(sim, account, now_ts))
    raise _Reply(404, {"success": False, "message": "Not Found"})


def _retype(row: _LogRow) -> _LogRow:
    """Stat sums consume rows whatever ``type`` asks for: make the type filter pass."""
    return _LogRow(row.ts, row.seq, 0, row.event, row.topup)


def _gateway_user(sim: ProviderSimulator, account: WorldAccount) -> dict[str, Any]:
    state = sim.balance(account.slug)
    if account.kind == "newapi":
        return {
            "id": account.newapi_user_id,
            "username": NEWAPI_USERNAME,
            "display_name": "Alice",
            "role": 1,
            "status": 1,
            "email": "alice@example.com",
            "github_id": "",
            "oidc_id": "",
            "wechat_id": "",
            "telegram_id": "",
            "linux_do_id": "",
            "verification_code": "",
            # New API 2025 serializes the caller's own access token: connectors must not store this.
            "access_token": account.credential,
            "quota": state.quota,
            "used_quota": state.used_quota,
            "request_count": state.request_count,
            "group": account.group,
            "aff_code": "Xy9k",
            "aff_count": 0,
            "aff_quota": 0,
            "aff_history_quota": 0,
            "inviter_id": 0,
            "DeletedAt": None,
            "setting": "{}",
            "stripe_customer": "",
        }
    return {
        "id": 7,
        "username": "legacy",
        "password": "",
        "display_name": "Legacy gateway",
        "role": 1,
        "status": 1,
        "email": "",
        "github_id": "",
        "wechat_id": "",
        "lark_id": "",
        "oidc_id": "",
        "verification_code": "",
        "quota": state.quota,
        "used_quota": state.used_quota,
        "request_count": state.request_count,
        "group": account.group,
        "aff_code": "Lg7q",
        "inviter_id": 0,
    }


def _topup_item(account: WorldAccount, topup_id: int, topup: SimTopUp) -> dict[str, Any]:
    return {
        "id": topup_id,
        "user_id": account.newapi_user_id,
        "amount": int(topup.amount),
        "money": topup.money,
        "trade_no": topup.trade_no,
        "payment_method": topup.payment_method,
        "payment_provider": "epay",
        "create_time": topup.ts,
        "complete_time": topup.completed_ts,
        "status": topup.status,
    }


def _newapi_quota_data(
    sim: ProviderSimulator, account: WorldAccount, start: int, end: int, now_ts: int
) -> list[dict[str, Any]]:
    """QuotaData: consume rows bucketed per hour (``created_at`` = hour start) and model."""
    grouped: dict[tuple[int, str], list[int]] = {}
    first = start - start % HOUR
    for event in sim._events(account.slug, first, end + 1, now_ts):
        hour = event.ts - event.ts % HOUR
        if event.status != "success" or not start <= hour <= end:
            continue
        acc = grouped.setdefault((hour, event.model), [0, 0, 0])
        acc[0] += event.input_tokens + event.output_tokens
        acc[1] += 1
        acc[2] += event.quota or 0
    return [
        {
            "id": i + 1,
            "user_id": account.newapi_user_id,
            "username": NEWAPI_USERNAME,
            "model_name": model,
            "created_at": hour,
            "token_used": acc[0],
            "count": acc[1],
            "quota": acc[2],
        }
        for i, ((hour, model), acc) in enumerate(sorted(grouped.items()))
    ]


def _oneapi_dashboard(sim: ProviderSimulator, account: WorldAccount, now_ts: int) -> list[dict[str, Any]]:
    today = now_ts - now_ts % DAY
    grouped: dict[tuple[str, str], list[int]] = {}
    for event in sim._events(account.slug, today - 6 * DAY, now_ts + 1, now_ts):
        day = datetime.fromtimestamp(event.ts, UTC).strftime("%Y-%m-%d")
        acc = grouped.setdefault((day, event.model), [0, 0, 0, 0])
        acc[0] += 1
        acc[1] += event.quota or 0
        acc[2] += event.input_tokens
        acc[3] += event.output_tokens
    return [
        {
            "Day": day,
            "ModelName": model,
            "RequestCount": v[0],
            "Quota": v[1],
            "PromptTokens": v[2],
            "CompletionTokens": v[3],
        }
        for (day, model), v in sorted(grouped.items())
    ]


# --- OpenAI ---------------------------------------------------------------------------------------


def _openai_error(
    status: int, message: str, kind: str = "invalid_request_error", code: str | None = None
) -> _Reply:
    return _Reply(status, {"error": {"message": message, "type": kind, "param": None, "code": code}})


_WIDTHS = {"1m": 60, "1h": HOUR, "1d": DAY}
_OPENAI_LIMITS = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}


def _buckets(
    start_ts: int, end_ts: int, width: int, limit: int, cursor_ts: int | None, *, align_first: bool
) -> tuple[list[tuple[int, int]], int | None]:
    """Bucket bounds from ``cursor_ts`` (or ``start_ts``), up to ``limit``; and the next cursor."""
    first = cursor_ts if cursor_ts is not None else start_ts
    if align_first:
        first -= first % width
    buckets: list[tuple[int, int]] = []
    begin = first
    while begin < end_ts and len(buckets) < limit:
        finish = min(begin - begin % width + width, end_ts)
        buckets.append((begin, finish))
        begin = finish
    return buckets, (begin if begin < end_ts else None)


def _openai(sim: ProviderSimulator, account: WorldAccount, path: str, request: _Request) -> Any:
    auth = request.header("Authorization") or ""
    if auth != f"Bearer {account.credential}":
        redacted = (auth.removeprefix("Bearer ")[:8] + "****") if auth else ""
        raise _openai_error(
            401,
            f"Incorrect API key provided: {redacted}. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
            if auth
            else "You didn't provide an API key.",
            code="invalid_api_key",
        )
    now_ts = sim.now_ts()
    if path == "/v1/organization/usage/completions":
        return _openai_usage(sim, account, request, now_ts)
    if path == "/v1/organization/costs":
        return _openai_costs(sim, account, request, now_ts)
    if path == "/v1/organization/projects":
        return _openai_projects(sim, account, request)
    match = re.fullmatch(r"/v1/organization/projects/([^/]+)/api_keys", path)
    if match:
        return _openai_keys(sim, account, match.group(1), request, now_ts)
    raise _openai_error(404, f"Invalid URL (GET {path})")


def _page_params(
    request: _Request, limits: dict[str, tuple[int, int]], error: Callable[[int, str], _Reply]
) -> tuple[int, int, int | None]:
    width_name = request.get("bucket_width") or "1d"
    if width_name not in limits:
        raise error(400, f"Invalid value for bucket_width: {width_name!r}")
    default, maximum = limits[width_name]
    limit = _int_param(request, "limit", default) or default
    if not 1 <= limit <= maximum:
        raise error(400, f"limit must be between 1 and {maximum} for bucket_width {width_name}")
    page = request.get("page")
    cursor = None
    if page:
        try:
            cursor = _uncursor(page)
        except (ValueError, UnicodeDecodeError):
            raise error(400, "Invalid page cursor") from None
    return _WIDTHS[width_name], limit, cursor


def _openai_window(request: _Request, now_ts: int, width: int) -> tuple[int, int]:
    raw_start = request.get("start_time")
    if raw_start is None:
        raise _openai_error(400, "Missing required parameter: 'start_time'.")
    try:
        start = int(raw_start)
        end = int(request.get("end_time") or 0) or None
    except ValueError:
        raise _openai_error(400, "start_time and end_time must be unix seconds") from None
    if end is None:
        # Open-ended: run to the end of the bucket holding now; nothing after now has data.
        end = now_ts + width - now_ts % width
    return start, end


def _external_project_id(account: WorldAccount, project_slug: str | None) -> str | None:
    external = account.external_project(project_slug)
    return external.external_id if external else None


def _openai_usage(sim: ProviderSimulator, account: WorldAccount, request: _Request, now_ts: int) -> Any:
    width, limit, cursor = _page_params(request, _OPENAI_LIMITS, lambda s, m: _openai_error(s, m))
    start, end = _openai_window(request, now_ts, width)
    group_by = request.many("group_by")
    allowed = {"project_id", "user_id", "api_key_id", "model", "batch", "service_tier"}
    if not set(group_by) <= allowed:
        raise _openai_error(400, f"Invalid group_by: {sorted(set(group_by) - allowed)}")
    projects, keys, models = (
        set(request.many("project_ids")),
        set(request.many("api_key_ids")),
        set(request.many("models")),
    )
    users = request.many("user_ids")
    batch = request.get("batch")
    buckets, next_start = _buckets(start, end, width, limit, cursor, align_first=False)
    data = []
    for begin, finish in buckets:
        groups: dict[tuple[Any, ...], dict[str, int]] = {}
        for event in sim._events(account.slug, begin, finish, now_ts):
            project_id = _external_project_id(account, event.project_slug)
            if (projects and project_id not in projects) or (keys and event.key_external_id not in keys):
                continue
            if (models and event.model not in models) or users or batch == "true":
                continue
            dims = {
                "project_id": project_id,
                "user_id": None,
                "api_key_id": event.key_external_id,
                "model": event.model,
                "batch": False,
                "service_tier": "default",
            }
            key = tuple(dims[g] if g in group_by else None for g in sorted(allowed))
            acc = groups.setdefault(key, {"in": 0, "cached": 0, "out": 0, "n": 0})
            acc["in"] += event.input_tokens
            acc["cached"] += event.cache_read_tokens
            acc["out"] += event.output_tokens
            acc["n"] += event.requests
        results = []
        for key in sorted(groups, key=lambda k: tuple("" if v is None else str(v) for v in k)):
            acc = groups[key]
            dims_out = dict(zip(sorted(allowed), key, strict=True))
            results.append(
                {
                    "object": "organization.usage.completions.result",
                    "input_tokens": acc["in"],
                    "input_cached_tokens": acc["cached"],
                    "input_cache_write_tokens": 0,
                    "input_uncached_tokens": acc["in"] - acc["cached"],
                    "output_tokens": acc["out"],
                    "input_text_tokens": acc["in"] - acc["cached"],
                    "output_text_tokens": acc["out"],
                    "input_cached_text_tokens": acc["cached"],
                    "input_audio_tokens": 0,
                    "input_cached_audio_tokens": 0,
                    "output_audio_tokens": 0,
                    "input_image_tokens": 0,
                    "input_cached_image_tokens": 0,
                    "output_image_tokens": 0,
                    "num_model_requests": acc["n"],
                    "project_id": dims_out["project_id"],
                    "user_id": dims_out["user_id"],
                    "api_key_id": dims_out["api_key_id"],
                    "model": dims_out["model"],
                    "batch": dims_out["batch"],
                    "service_tier": dims_out["service_tier"],
                }
            )
        data.append({"object": "bucket", "start_time": begin, "end_time": finish, "results": results})
    return {
        "object": "page",
        "data": data,
        "has_more": next_start is not None,
        "next_page": _cursor(next_start) if next_start is not None else None,
    }


def _openai_costs(sim: ProviderSimulator, account: WorldAccount, request: _Request, now_ts: int) -> Any:
    width, limit, cursor = _page_params(request, {"1d": (7, 180)}, lambda s, m: _openai_error(s, m))
    start, end = _openai_window(request, now_ts, width)
    group_by = request.many("group_by")
    allowed = {"project_id", "line_item", "api_key_id"}
    if not set(group_by) <= allowed:
        raise _openai_error(400, f"Invalid group_by: {sorted(set(group_by) - allowed)}")
    projects, keys = set(request.many("project_ids")), set(request.many("api_key_ids"))
    buckets, next_start = _buckets(start, end, width, limit, cursor, align_first=False)
    data = []
    for begin, finish in buckets:
        groups: dict[tuple[str | None, str | None, str | None], list[Any]] = {}
        for event in sim._events(account.slug, begin, finish, now_ts):
            project_id = _external_project_id(account, event.project_slug)
            if (projects and project_id not in projects) or (keys and event.key_external_id not in keys):
                continue
            rates = generator.model_rates(sim.world, account.slug, event.model)
            lines = (
                (f"{event.model}, input", event.uncached_input_tokens, rates.inp),
                (f"{event.model}, cached input", event.cache_read_tokens, rates.read),
                (f"{event.model}, output", event.output_tokens, rates.out),
            )
            for line_item, tokens, rate in lines:
                if tokens == 0:
                    continue
                key = (
                    project_id if "project_id" in group_by else None,
                    line_item if "line_item" in group_by else None,
                    event.key_external_id if "api_key_id" in group_by else None,
                )
                acc = groups.setdefault(key, [Decimal(0), 0])
                acc[0] += Decimal(tokens * rate).scaleb(-12)
                acc[1] += tokens
        results = []
        for key in sorted(groups, key=lambda k: tuple(v or "" for v in k)):
            amount, quantity = groups[key]
            result: dict[str, Any] = {
                "object": "organization.costs.result",
                "amount": {"value": amount.normalize() if amount else Decimal(0), "currency": "usd"},
                "line_item": key[1],
                "project_id": key[0],
                "api_key_id": key[2],
            }
            if "line_item" in group_by:
                result.update(quantity=quantity, quantity_unit="tokens")
            results.append(result)
        data.append({"object": "bucket", "start_time": begin, "end_time": finish, "results": results})
    return {
        "object": "page",
        "data": data,
        "has_more": next_start is not None,
        "next_page": _cursor(next_start) if next_start is not None else None,
    }


_PROJECT_CREATED = 1735689600  # 2025-01-01


def _openai_projects(sim: ProviderSimulator, account: WorldAccount, request: _Request) -> Any:
    include_archived = (request.get("include_archived") or "false").lower() == "true"
    limit = max(1, min(100, _int_param(request, "limit", 20) or 20))
    after = request.get("after")
    projects = [
        p for p in account.external_projects if p.external_id and (include_archived or not p.archived)
    ]
    if after:
        ids = [p.external_id for p in projects]
        projects = projects[ids.index(after) + 1 :] if after in ids else []
    page = projects[:limit]
    data = [
        {
            "id": p.external_id,
            "object": "organization.project",
            "name": p.name,
            "created_at": _PROJECT_CREATED + i * 86400 * 17,
            "archived_at": _PROJECT_CREATED + 86400 * 200 if p.archived else None,
            "status": "archived" if p.archived else "active",
        }
        for i, p in enumerate(page)
    ]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(projects) > limit,
    }


def _openai_keys(
    sim: ProviderSimulator, account: WorldAccount, project_id: str, request: _Request, now_ts: int
) -> Any:
    if project_id not in {p.external_id for p in account.external_projects}:
        raise _openai_error(404, f"No project found with id '{project_id}'.")
    limit = max(1, min(100, _int_param(request, "limit", 20) or 20))
    after = request.get("after")
    keys = [k for k in account.keys if _external_project_id(account, k.project_slug) == project_id]
    if after:
        ids = [k.external_id for k in keys]
        keys = keys[ids.index(after) + 1 :] if after in ids else []
    data = []
    for i, key in enumerate(keys[:limit]):
        last = _last_used(sim, account, key.external_id, now_ts)
        owner: dict[str, Any]
        if i % 2:
            owner = {
                "type": "user",
                "user": {
                    "id": "user_abc123",
                    "name": "Alice",
                    "email": "alice@example.com",
                    "role": "owner",
                    "added_at": _PROJECT_CREATED,
                },
            }
        else:
            owner = {
                "type": "service_account",
                "service_account": {
                    "id": f"svc_acct_{key.external_id[4:12]}",
                    "name": key.name,
                    "role": "member",
                    "created_at": _PROJECT_CREATED,
                },
            }
        data.append(
            {
                "object": "organization.project.api_key",
                "id": key.external_id,
                "name": key.name,
                "redacted_value": f"sk-proj-****{key.external_id[-4:]}",
                "created_at": _PROJECT_CREATED + 86400 * (3 + i),
                "last_used_at": last,
                "owner": owner,
                "owner_project_access": "active",
            }
        )
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(keys) > limit,
    }


def _last_used(sim: ProviderSimulator, account: WorldAccount, key_id: str, now_ts: int) -> int | None:
    hour = now_ts - now_ts % HOUR
    for _ in range(72):
        hits = [e.ts for e in sim._hour(account.slug, hour) if e.key_external_id == key_id]
        if hits and hour + HOUR <= now_ts:
            return max(hits) + HOUR - 1
        hour -= HOUR
    return None


# --- Anthropic ------------------------------------------------------------------------------------


def _anthropic_error(status: int, message: str) -> _Reply:
    kinds = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
        500: "api_error",
        529: "overloaded_error",
    }
    return _Reply(
        status, {"type": "error", "error": {"type": kinds.get(status, "api_error"), "message": message}}
    )


def _anthropic_time(request: _Request, name: str, required: bool) -> int | None:
    raw = request.get(name)
    if not raw:
        if required:
            raise _anthropic_error(400, f"{name}: Field required")
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise _anthropic_error(400, f"{name}: Input should be a valid datetime") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


_ANTHROPIC_LIMITS = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}


def _anthropic(sim: ProviderSimulator, account: WorldAccount, path: str, request: _Request) -> Any:
    if request.header("x-api-key") != account.credential:
        raise _anthropic_error(401, "invalid x-api-key")
    if not request.header("anthropic-version"):
        raise _anthropic_error(400, "anthropic-version: header is required")
    now_ts = sim.now_ts()
    if path == "/v1/organizations/usage_report/messages":
        return _anthropic_usage(sim, account, request, now_ts)
    if path == "/v1/organizations/cost_report":
        return _anthropic_costs(sim, account, request, now_ts)
    raise _anthropic_error(404, f"Not found: {path}")


def _anthropic_window(request: _Request, now_ts: int, width: int) -> tuple[int, int]:
    start = _anthropic_time(request, "starting_at", True)
    end = _anthropic_time(request, "ending_at", False)
    assert start is not None
    return start, end if end is not None else now_ts + width - now_ts % width


def _anthropic_usage(sim: ProviderSimulator, account: WorldAccount, request: _Request, now_ts: int) -> Any:
    width, limit, cursor = _page_params(request, _ANTHROPIC_LIMITS, _anthropic_error)
    start, end = _anthropic_window(request, now_ts, width)
    group_by = request.many("group_by")
    allowed = ("api_key_id", "workspace_id", "model", "service_tier", "context_window", "inference_geo")
    unknown = set(group_by) - set(allowed) - {"speed", "account_id", "service_account_id"}
    if unknown:
        raise _anthropic_error(400, f"group_by: invalid values {sorted(unknown)}")
    keys, workspaces, models = (
        set(request.many("api_key_ids")),
        set(request.many("workspace_ids")),
        set(request.many("models")),
    )
    buckets, next_start = _buckets(start, end, width, limit, cursor, align_first=True)
    data = []
    for begin, finish in buckets:
        groups: dict[tuple[Any, ...], list[int]] = {}
        for event in sim._events(account.slug, begin, finish, now_ts):
            workspace = _external_project_id(account, event.project_slug)
            if (keys and event.key_external_id not in keys) or (models and event.model not in models):
                continue
            if workspaces and workspace not in workspaces:
                continue
            dims = {
                "api_key_id": event.key_external_id,
                "workspace_id": workspace,
                "model": event.model,
                "service_tier": "standard",
                "context_window": "0-200k",
                "inference_geo": "global",
            }
            key = tuple(dims[g] if g in group_by else None for g in allowed)
            acc = groups.setdefault(key, [0, 0, 0, 0])
            acc[0] += event.uncached_input_tokens
            acc[1] += event.cache_read_tokens
            acc[2] += event.cache_write_tokens
            acc[3] += event.output_tokens
        results = []
        for key in sorted(groups, key=lambda k: tuple(v or "" for v in k)):
            acc = groups[key]
            row: dict[str, Any] = {
                "uncached_input_tokens": acc[0],
                "cache_read_input_tokens": acc[1],
                "cache_creation": {"ephemeral_5m_input_tokens": acc[2], "ephemeral_1h_input_tokens": 0},
                "output_tokens": acc[3],
                "server_tool_use": {"web_search_requests": 0},
            }
            row.update(zip(allowed, key, strict=True))
            results.append(row)
        data.append({"starting_at": _rfc3339(begin), "ending_at": _rfc3339(finish), "results": results})
    return {
        "data": data,
        "has_more": next_start is not None,
        "next_page": _cursor(next_start) if next_start is not None else None,
    }


_TOKEN_TYPES = (
    ("uncached_input_tokens", "Input Tokens"),
    ("cache_read_input_tokens", "Input Tokens, Cache Read"),
    ("cache_creation.ephemeral_5m_input_tokens", "Input Tokens, Cache Write (5m)"),
    ("output_tokens", "Output Tokens"),
)


def _anthropic_costs(sim: ProviderSimulator, account: WorldAccount, request: _Request, now_ts: int) -> Any:
    width, limit, cursor = _page_params(request, {"1d": (7, 31)}, _anthropic_error)
    start, end = _anthropic_window(request, now_ts, width)
    group_by = request.many("group_by")
    if not set(group_by) <= {"workspace_id", "description"}:
        raise _anthropic_error(400, "group_by: only workspace_id and description are supported")
    buckets, next_start = _buckets(start, end, width, limit, cursor, align_first=True)
    by_description = "description" in group_by
    data = []
    for begin, finish in buckets:
        groups: dict[tuple[str | None, str | None, str | None], Decimal] = {}
        for event in sim._events(account.slug, begin, finish, now_ts):
            workspace = (
                _external_project_id(account, event.project_slug) if "workspace_id" in group_by else None
            )
            rates = generator.model_rates(sim.world, account.slug, event.model)
            parts = (
                event.uncached_input_tokens * rates.inp,
                event.cache_read_tokens * rates.read,
                event.cache_write_tokens * rates.write,
                event.output_tokens * rates.out,
            )
            for (token_type, _), micro in zip(_TOKEN_TYPES, parts, strict=True):
                if micro == 0:
                    continue
                key = (
                    workspace,
                    event.model if by_description else None,
                    token_type if by_description else None,
                )
                groups[key] = groups.get(key, Decimal(0)) + Decimal(micro).scaleb(-12)
        results = []
        for key in sorted(groups, key=lambda k: tuple(v or "" for v in k)):
            workspace, model, token_name = key
            label = dict(_TOKEN_TYPES).get(token_name or "")
            results.append(
                {
                    "currency": "USD",
                    "amount": _cents_str(groups[key]),
                    "workspace_id": workspace,
                    "description": f"{_DISPLAY.get(model or '', model)} Usage - {label}" if model else None,
                    "cost_type": "tokens",
                    "context_window": "0-200k" if model else None,
                    "model": model,
                    "service_tier": "standard" if model else None,
                    "token_type": token_name,
                    "inference_geo": None,
                }
            )
        data.append({"starting_at": _rfc3339(begin), "ending_at": _rfc3339(finish), "results": results})
    return {
        "data": data,
        "has_more": next_start is not None,
        "next_page": _cursor(next_start) if next_start is not None else None,
    }


# --- DeepSeek and OpenRouter ----------------------------------------------------------------------


def _deepseek(sim: ProviderSimulator, account: WorldAccount, path: str, request: _Request) -> Any:
    if request.header("Authorization") != f"Bearer {account.credential}":
        raise _Reply(
            401,
            {
                "error": {
                    "message": "Authentication Fails, Your api key: ****cret is invalid",
                    "type": "authentication_error",
                    "param": None,
                    "code": "invalid_request_error",
                }
            },
        )
    if path != "/user/balance":
        raise _Reply(404, {"error": {"message": "Not Found", "type": "invalid_request_error"}})
    return deepseek_balance_body(sim.balance(account.slug))


DEEPSEEK_GRANT = Decimal("10")


def deepseek_balance_body(state: BalanceState) -> dict[str, Any]:
    """DeepSeek shows cents: granted credit is spent first, the rest comes off topped-up money."""
    cent = Decimal("0.01")
    granted = max(Decimal(0), DEEPSEEK_GRANT - state.used)
    topped = state.remaining - granted
    return {
        "is_available": state.remaining > 0,
        "balance_infos": [
            {
                "currency": state.currency,
                "total_balance": f"{(granted + topped).quantize(cent)}",
                "granted_balance": f"{granted.quantize(cent)}",
                "topped_up_balance": f"{topped.quantize(cent)}",
            }
        ],
    }


def _openrouter_error(status: int, message: str) -> _Reply:
    return _Reply(status, {"error": {"code": status, "message": message}})


def _openrouter(sim: ProviderSimulator, account: WorldAccount, path: str, request: _Request) -> Any:
    auth = (request.header("Authorization") or "").removeprefix("Bearer ")
    management = auth == account.credential
    if not management and auth != account.inference_credential:
        raise _openrouter_error(401, "No auth credentials found" if not auth else "User not found.")
    now_ts = sim.now_ts()
    if path == "/api/v1/credits":
        if not management:
            raise _openrouter_error(403, "Only management keys can fetch credits")
        state = sim.balance(account.slug)
        return {
            "data": {"total_credits": account.opening_balance + state.topped_up, "total_usage": state.used}
        }
    if path in ("/api/v1/key", "/api/v1/auth/key"):
        return {"data": _openrouter_key(sim, account, management, now_ts)}
    if path == "/api/v1/activity":
        if not management:
            raise _openrouter_error(403, "Only management keys can fetch activity")
        return {"data": _openrouter_activity(sim, account, request, now_ts)}
    raise _openrouter_error(404, "Not Found")


def _openrouter_key(
    sim: ProviderSimulator, account: WorldAccount, management: bool, now_ts: int
) -> dict[str, Any]:
    key = account.keys[0]
    today = now_ts - now_ts % DAY
    now_day = datetime.fromtimestamp(today, UTC)
    week = today - now_day.weekday() * DAY
    month = int(now_day.replace(day=1).timestamp())

    def usage(since: int) -> Decimal:
        if management:
            return Decimal(0)
        return sum(
            (
                e.cost
                for e in sim._events(account.slug, since, now_ts + 1, now_ts)
                if e.key_external_id == key.external_id
            ),
            Decimal(0),
        )

    total = usage(sim.opened_ts)
    limit = None if management else Decimal(500)
    return {
        "label": "sk-or-v1-mgmt...0c1" if management else key.name,
        "limit": limit,
        "limit_remaining": None if limit is None else limit - total,
        "limit_reset": None,
        "include_byok_in_limit": False,
        "usage": total,
        "usage_daily": usage(today),
        "usage_weekly": usage(week),
        "usage_monthly": usage(month),
        "byok_usage": 0,
        "byok_usage_daily": 0,
        "byok_usage_weekly": 0,
        "byok_usage_monthly": 0,
        "is_free_tier": False,
        "is_management_key": management,
        "is_provisioning_key": management,
        "creator_user_id": "user_2abSimOpenRouter",
        "expires_at": None,
        "rate_limit": {
            "requests": 1000,
            "interval": "1h",
            "note": "This field is deprecated and safe to ignore.",
        },
    }


def _openrouter_activity(
    sim: ProviderSimulator, account: WorldAccount, request: _Request, now_ts: int
) -> list[dict[str, Any]]:
    today = now_ts - now_ts % DAY
    first = today - 30 * DAY
    wanted = request.get("date")
    key_hash = request.get("api_key_hash")
    start, end = first, today
    if wanted:
        try:
            day = date.fromisoformat(wanted)
        except ValueError:
            raise _openrouter_error(400, "date must be YYYY-MM-DD") from None
        start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
        if not first <= start < today:
            raise _openrouter_error(400, "date must be within the last 30 completed UTC days")
        end = start + DAY
    grouped: dict[tuple[str, str], list[Any]] = {}
    for event in sim._events(account.slug, start, end, now_ts):
        if key_hash and event.key_external_id != key_hash:
            continue
        day_str = datetime.fromtimestamp(event.ts - event.ts % DAY, UTC).strftime("%Y-%m-%d")
        acc = grouped.setdefault((day_str, event.model), [Decimal(0), 0, 0, 0, 0])
        acc[0] += event.cost
        acc[1] += event.requests
        acc[2] += event.input_tokens
        acc[3] += event.output_tokens
        acc[4] += event.reasoning_tokens
    rows = []
    for (day_str, model), acc in sorted(grouped.items()):
        vendor = model.split("/", 1)[0]
        rows.append(
            {
                "date": day_str,
                "model": model,
                "model_permaslug": model,
                "endpoint_id": f"ep-{vendor}-{zlib.crc32(model.encode()) % 10**6:06d}",
                "provider_name": _OPENROUTER_PROVIDERS.get(vendor, vendor),
                "usage": acc[0].normalize(),
                "byok_usage_inference": 0.0,
                "requests": acc[1],
                "prompt_tokens": acc[2],
                "completion_tokens": acc[3],
                "reasoning_tokens": acc[4],
            }
        )
    return rows


_PROVIDERS: dict[str, Handler] = {
    "newapi": _gateway,
    "oneapi": _gateway,
    "openai": _openai,
    "anthropic": _anthropic,
    "deepseek": _deepseek,
    "openrouter": _openrouter,
}


# --- HTTP plumbing --------------------------------------------------------------------------------


def _fault_body(account: WorldAccount, status: int, message: str) -> Any:
    if account.is_gateway:
        return {"success": False, "message": message}
    if account.kind == "anthropic":
        return _anthropic_error(status, message).body
    if account.kind == "openrouter":
        return {"error": {"code": status, "message": message}}
    return {
        "error": {
            "message": message,
            "type": "server_error" if status >= 500 else "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


_BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
    b"</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


class _Handler(BaseHTTPRequestHandler):
    sim: ProviderSimulator
    protocol_version = "HTTP/1.1"
    server_version = "ProviderSimulator/1.0"
    # Headers and body go out in two writes; with Nagle on, each response waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._serve()

    def _serve(self) -> None:
        sim = self.sim
        url = urlsplit(self.path)
        slug = url.path.strip("/").split("/", 1)[0]
        fault = None
        fault_name = ""
        try:
            account = sim.world.account(slug)
        except KeyError:
            account = None
        else:
            fault = sim._take_fault(slug)
        request = _Request(self.command, url.path, url.query, self.headers)
        status, headers, body = 200, {}, None
        payload: bytes
        if fault is not None and account is not None:
            mode = fault_name = fault.mode
            if mode == "stall":
                sim._stop.wait(float(fault.params.get("seconds", 30)))
                fault = None  # then answer normally
            elif mode == "disconnect":
                self._record(slug, url, 0, mode)
                self.close_connection = True
                return
        if fault is not None and account is not None:
            mode = fault.mode
            if mode == "rate_limit":
                status = 429
                headers["Retry-After"] = str(fault.params.get("retry_after", 7))
                body = _fault_body(account, 429, "Rate limit reached, please retry later")
            elif mode == "server_error":
                status = int(fault.params.get("status", 500))
                body = _fault_body(account, status, "Internal server error")
            elif mode == "bad_gateway_html":
                status = 502
                headers["Content-Type"] = "text/html"
                body = _BAD_GATEWAY_HTML
            elif mode == "success_false":
                body = {"success": False, "message": "当前分组上游负载已饱和，请稍后再试"}
            elif mode == "unauthorized":
                status = 401
                body = _fault_body(account, 401, "Unauthorized: credential revoked")
            elif mode == "forbidden":
                status = 403
                body = _fault_body(account, 403, "Forbidden: this key lacks the required permission")
            elif mode == "huge":
                size = int(fault.params.get("size", HUGE_BYTES))
                body = {"success": True, "object": "page", "data": [], "padding": "x" * size}
            elif mode in ("truncated", "drip"):
                status, headers, body = sim.handle(request)
        else:
            status, headers, body = sim.handle(request)
        if isinstance(body, bytes):
            payload = body
        else:
            payload = _dumps(body)
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        if fault is not None and fault.mode == "truncated":
            payload = payload[: max(1, len(payload) // 2)]
        if "gzip" in (self.headers.get("Accept-Encoding") or ""):
            payload = gzip.compress(payload, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        # Logged before the reply goes out, so a client that has its answer finds it in the log.
        self._record(slug, url, status, fault_name)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            try:
                if fault_name == "drip" and fault is not None:
                    self._drip(payload, float(fault.params.get("interval", 1)))
                else:
                    self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    def _drip(self, payload: bytes, interval: float) -> None:
        """Send the body a byte at a time, ``interval`` seconds apart: no single read ever times out."""
        for offset in range(len(payload)):
            if self.sim._stop.wait(interval if offset else 0):
                return
            self.wfile.write(payload[offset : offset + 1])
            self.wfile.flush()

    def _record(self, slug: str, url: Any, status: int, fault: str) -> None:
        self.sim.request_log.append(
            RequestRecord(slug, self.command, url.path, url.query, status, time.monotonic(), fault)
        )
