"""The money rules of budgets, runway, credits and auto-recharge, as pure functions of Decimals and dates.

No database and no clock: selectors and services feed these, tests pin them with exact numbers.
Rules and their sources are in shared/docs/domain.md; each function's docstring states the
convention it picks where the domain leaves a choice (windows, inclusivity, rounding).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Literal

ZERO = Decimal(0)
HUNDRED = Decimal(100)

# Suggested top-up = average daily spend x days to cover x safety factor. Production carries a larger
# buffer: it must absorb peaks and the days it takes to notice and fix a failed payment (domain.md,
# "Balances, top-ups and credits"); testing only needs to ride out normal variation.
DAYS_TO_COVER = 30
SAFETY_FACTORS: Mapping[str, Decimal] = {"production": Decimal("1.5"), "testing": Decimal("1.2")}
RUNWAY_WINDOW_DAYS = 7
ANOMALY_BASELINE_DAYS = 14
EXPIRING_SOON_DAYS = 30


# --- Windows and averages -------------------------------------------------------------------------


def trailing_days(today: date, days: int) -> tuple[date, date]:
    """Return the window of ``days`` complete local days before ``today`` (today itself excluded).

    Today is partial, so including it would understate the average in the morning.
    """
    return today - timedelta(days=days), today - timedelta(days=1)


def trailing_average(
    daily: Mapping[date, Decimal], *, today: date, days: int = RUNWAY_WINDOW_DAYS
) -> Decimal:
    """Return the average daily spend over the ``days`` complete days before today.

    The divisor is always ``days``: a day without usage counts as zero spend, not as missing.
    """
    first, last = trailing_days(today, days)
    total = sum((amount for day, amount in daily.items() if first <= day <= last), ZERO)
    return total / days


def days_left_in_month(today: date) -> int:
    """Return the days after today until the month ends (0 on the last day)."""
    return calendar.monthrange(today.year, today.month)[1] - today.day


def month_bounds(day: date) -> tuple[date, date]:
    return day.replace(day=1), day.replace(day=calendar.monthrange(day.year, day.month)[1])


def add_months(day: date, months: int) -> date:
    """Return the first day of the month ``months`` away from ``day``'s month."""
    index = day.year * 12 + (day.month - 1) + months
    return date(index // 12, index % 12 + 1, 1)


# --- Budgets ----------------------------------------------------------------------------------------


def month_forecast(*, month_to_date: Decimal, average_daily: Decimal, today: date) -> Decimal:
    """Forecast to month end = month-to-date + recent daily average x days left after today."""
    return month_to_date + average_daily * days_left_in_month(today)


BudgetState = Literal["on-track", "at-risk", "over"]


@dataclass(frozen=True)
class Variance:
    budget: Decimal
    actual: Decimal
    forecast: Decimal
    amount: Decimal  # actual - budget: negative means under budget
    percent: Decimal  # amount / budget x 100
    used_percent: Decimal  # actual / budget x 100
    state: BudgetState


def budget_variance(*, budget: Decimal, actual: Decimal, forecast: Decimal | None = None) -> Variance:
    """Return variance (actual - budget) as amount and % of budget, and the state.

    Over: actual already above budget. At risk: the forecast is above budget. Otherwise on track.
    A closed month passes no forecast (the forecast is the actual). ``budget`` must be positive.
    """
    expected = actual if forecast is None else forecast
    amount = actual - budget
    state: BudgetState = "over" if actual > budget else "at-risk" if expected > budget else "on-track"
    return Variance(
        budget=budget,
        actual=actual,
        forecast=expected,
        amount=amount,
        percent=amount / budget * HUNDRED,
        used_percent=actual / budget * HUNDRED,
        state=state,
    )


def thresholds_crossed(*, actual: Decimal, budget: Decimal, thresholds: Iterable[int]) -> list[int]:
    """Return the thresholds (percent of budget) that ``actual`` has reached: 80 % of 100 is crossed at 80."""
    return sorted(t for t in set(thresholds) if actual * HUNDRED >= budget * t)


def parse_thresholds(text: str) -> list[int]:
    """Parse "50, 80, 100" into [50, 80, 100]; raises ValueError naming the bad part."""
    values = set()
    for part in text.replace(";", ",").split(","):
        part = part.strip().rstrip("%").strip()
        if not part:
            continue
        if not part.isdigit() or not 1 <= int(part) <= 1000:
            raise ValueError(f"{part!r} is not a whole percentage between 1 and 1000")
        values.add(int(part))
    if not values:
        raise ValueError("give at least one threshold, e.g. 50, 80, 100")
    return sorted(values)


# --- Runway and top-ups -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Runway:
    """Days the balance lasts at the trailing average (None: no recent spend, so no end in sight)."""

    balance: Decimal
    average_daily: Decimal
    days: Decimal | None
    low_days: Decimal | None  # at the busiest recent day's rate
    high_days: Decimal | None  # at the quietest recent day's rate (None when a day had no spend)
    runs_out_on: date | None


def runway(
    *, balance: Decimal, daily: Mapping[date, Decimal], today: date, days: int = RUNWAY_WINDOW_DAYS
) -> Runway:
    """Runway = balance / trailing ``days``-day average daily spend, with a band from the min/max day.

    "Runs out around" is today + whole days of runway. A zero or negative balance has 0 days.
    """
    first, _last = trailing_days(today, days)
    window = [daily.get(first + timedelta(days=n), ZERO) for n in range(days)]
    average = sum(window, ZERO) / days
    if average <= 0:
        return Runway(balance, average, None, None, None, None)
    if balance <= 0:
        return Runway(balance, average, ZERO, ZERO, ZERO, today)
    runway_days = balance / average
    busiest, quietest = max(window), min(window)
    return Runway(
        balance=balance,
        average_daily=average,
        days=runway_days,
        low_days=balance / busiest,
        high_days=balance / quietest if quietest > 0 else None,
        runs_out_on=today + timedelta(days=int(runway_days.to_integral_value(rounding=ROUND_FLOOR))),
    )


def safety_factor_for(environments: Iterable[str]) -> tuple[str, Decimal]:
    """Return ("production", 1.5) if any production project spends on the account, else ("testing", 1.2)."""
    if "production" in set(environments):
        return "production", SAFETY_FACTORS["production"]
    return "testing", SAFETY_FACTORS["testing"]


def suggested_topup(
    *, average_daily: Decimal, days_to_cover: int = DAYS_TO_COVER, safety_factor: Decimal
) -> Decimal:
    """Suggested top-up = average daily spend x days to cover x safety factor (unrounded)."""
    return average_daily * days_to_cover * safety_factor


@dataclass(frozen=True)
class PurchaseTerms:
    """What a provider lets you buy: the smallest top-up and how long bought credit lasts (None: forever)."""

    minimum: Decimal = ZERO
    expires_after_days: int | None = None


# OpenAI prepaid credits: minimum purchase $5, expire one year after purchase (domain.md). Other providers
# publish no minimum or expiry we rely on; an account without terms plans with none.
PURCHASE_TERMS: Mapping[str, PurchaseTerms] = {
    "openai": PurchaseTerms(minimum=Decimal("5"), expires_after_days=365),
}
NO_TERMS = PurchaseTerms()
CENT = Decimal("0.01")


@dataclass(frozen=True)
class TopUpPlan:
    """A suggested purchase. ``amount`` None means buy nothing; ``reason`` says which rule decided.

    reason: "" (plain average x days x factor), "minimum" (raised to the minimum purchase),
    "expiry" (cut to what can be spent before the credit expires), "no_spend" (no recent spend),
    "would_expire" (even the minimum purchase could not be used before it expires).
    """

    raw: Decimal
    amount: Decimal | None
    reason: str
    usable_before_expiry: Decimal | None


def plan_topup(
    *,
    average_daily: Decimal,
    safety_factor: Decimal,
    days_to_cover: int = DAYS_TO_COVER,
    terms: PurchaseTerms = NO_TERMS,
    balance: Decimal = ZERO,
) -> TopUpPlan:
    """Suggested top-up respecting the provider's minimum purchase and credit expiry.

    raw = average x days x factor, rounded up to the cent (you cannot buy a fraction of a cent). It is
    raised to ``terms.minimum``. With expiring credit it is never more than can be spent before the
    new credit expires: average x expiry days - the current balance (older credit is spent first), rounded
    down to the cent. When even the minimum purchase could not be spent in time, nothing is suggested.
    """
    raw = (average_daily * days_to_cover * safety_factor).quantize(CENT, rounding=ROUND_CEILING)
    if average_daily <= 0:
        return TopUpPlan(raw=ZERO, amount=None, reason="no_spend", usable_before_expiry=None)
    usable = None
    if terms.expires_after_days is not None:
        usable = max(average_daily * terms.expires_after_days - max(balance, ZERO), ZERO).quantize(
            CENT, rounding=ROUND_FLOOR
        )
    amount, reason = raw, ""
    if amount < terms.minimum:
        amount, reason = terms.minimum, "minimum"
    if usable is not None and amount > usable:
        if usable < terms.minimum or usable <= 0:
            return TopUpPlan(raw=raw, amount=None, reason="would_expire", usable_before_expiry=usable)
        amount, reason = usable, "expiry"
    return TopUpPlan(raw=raw, amount=amount, reason=reason, usable_before_expiry=usable)


# --- Anomalies --------------------------------------------------------------------------------------


def spend_anomaly(
    *, daily: Mapping[date, Decimal], day: date, factor: Decimal, min_amount: Decimal
) -> tuple[Decimal, Decimal] | None:
    """Return (spend, baseline) if ``day`` spent more than ``factor`` x its trailing 14-day average.

    The baseline is the 14 days before ``day`` (zero-spend days count). Days under ``min_amount``
    never alert, so a $0.02 day after a quiet fortnight is not an "anomaly".
    """
    spend = daily.get(day, ZERO)
    baseline = trailing_average(daily, today=day, days=ANOMALY_BASELINE_DAYS)
    if spend < min_amount or spend <= baseline * factor:
        return None
    return spend, baseline


# --- Auto-recharge ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerEvent:
    """Something that moves the balance within the month: a day's (or hour's) spend, or a manual top-up."""

    at: datetime
    kind: Literal["spend", "manual_topup"]
    amount: Decimal


@dataclass(frozen=True)
class AutoRecharge:
    at: datetime
    requested: Decimal
    added: Decimal
    balance_after: Decimal


@dataclass(frozen=True)
class RechargeMonth:
    recharges: list[AutoRecharge]
    total_added: Decimal
    limit_reached: bool
    closing_balance: Decimal
    refused_spend: Decimal  # spend that could not happen because the balance was at zero
    first_refused_at: datetime | None = None  # the first event whose spend was (partly) refused


def auto_recharge_allowance(*, monthly_limit: Decimal | None, recharged: Decimal) -> Decimal | None:
    """Return what auto-recharge may still add this month (None: no limit). Never negative."""
    if monthly_limit is None:
        return None
    return max(monthly_limit - recharged, ZERO)


def auto_recharge_month(
    *,
    opening_balance: Decimal,
    threshold: Decimal,
    amount: Decimal,
    monthly_limit: Decimal | None,
    events: Sequence[LedgerEvent],
    already_recharged: Decimal = ZERO,
) -> RechargeMonth:
    """Replay a month's events and return what auto-recharge adds.

    Rules (domain.md): after each event, a balance strictly below ``threshold`` triggers one
    recharge of ``amount``; only auto-recharges count toward ``monthly_limit`` (manual top-ups
    do not); a recharge that would pass the limit adds only the remaining allowance; once the
    limit is reached nothing more is added that month. Spend stops at a zero balance (calls fail),
    and the part that could not be spent is reported as ``refused_spend``.
    """
    balance = opening_balance
    recharged = already_recharged
    refused = ZERO
    first_refused_at: datetime | None = None
    recharges: list[AutoRecharge] = []
    for event in sorted(events, key=lambda e: e.at):
        if event.kind == "manual_topup":
            balance += event.amount
        else:
            spent = min(event.amount, max(balance, ZERO))
            refused += event.amount - spent
            if spent < event.amount and first_refused_at is None:
                first_refused_at = event.at
            balance -= spent
        if balance >= threshold:
            continue
        allowance = auto_recharge_allowance(monthly_limit=monthly_limit, recharged=recharged)
        added = amount if allowance is None else min(amount, allowance)
        if added <= 0:
            continue
        balance += added
        recharged += added
        recharges.append(AutoRecharge(at=event.at, requested=amount, added=added, balance_after=balance))
    limit_reached = monthly_limit is not None and recharged >= monthly_limit
    return RechargeMonth(
        recharges=recharges,
        total_added=sum((r.added for r in recharges), ZERO),
        limit_reached=limit_reached,
        closing_balance=balance,
        refused_spend=refused,
        first_refused_at=first_refused_at,
    )


@dataclass(frozen=True)
class RechargeProjection:
    """The next ``days`` days under an auto-recharge rule at a steady daily spend."""

    recharges: list[AutoRecharge]
    cash_out: dict[date, Decimal]  # first day of each month touched -> auto-recharge added that month
    limit_reached: dict[date, bool]  # first day of month -> the monthly limit was reached
    refused_spend: Decimal
    first_refused_on: date | None  # the first day calls would fail at zero balance
    closing_balance: Decimal


def auto_recharge_projection(
    *,
    opening_balance: Decimal,
    threshold: Decimal,
    amount: Decimal,
    monthly_limit: Decimal | None,
    daily_spend: Decimal,
    today: date,
    days: int = 30,
    already_recharged: Decimal = ZERO,
) -> RechargeProjection:
    """Project days today+1 .. today+``days`` at ``daily_spend`` a day (auto_recharge_month per month).

    ``already_recharged`` counts against this month's limit only; the limit starts afresh on the 1st of
    each following month, and the provider's check then runs at once (a balance left under the threshold
    by a limit-capped month is recharged at 00:00 on the 1st, before that day's spend). Spend is booked
    at noon UTC of its day; the month's cash-out is what auto-recharge adds (manual top-ups are not
    projected).
    """
    balance = opening_balance
    recharges: list[AutoRecharge] = []
    cash_out: dict[date, Decimal] = {}
    limit_reached: dict[date, bool] = {}
    refused = ZERO
    first_refused: date | None = None
    by_month: dict[date, list[date]] = {}
    for n in range(1, days + 1):
        day = today + timedelta(days=n)
        by_month.setdefault(day.replace(day=1), []).append(day)
    for first, month_days in by_month.items():
        events = [
            LedgerEvent(at=datetime(d.year, d.month, d.day, 12, tzinfo=UTC), kind="spend", amount=daily_spend)
            for d in month_days
        ]
        is_current = first == today.replace(day=1)
        if not is_current:
            events.insert(
                0, LedgerEvent(at=datetime(first.year, first.month, 1, tzinfo=UTC), kind="spend", amount=ZERO)
            )
        month = auto_recharge_month(
            opening_balance=balance,
            threshold=threshold,
            amount=amount,
            monthly_limit=monthly_limit,
            events=events,
            already_recharged=already_recharged if is_current else ZERO,
        )
        if first_refused is None and month.first_refused_at is not None:
            first_refused = month.first_refused_at.date()
        recharges.extend(month.recharges)
        cash_out[first] = month.total_added
        limit_reached[first] = month.limit_reached
        refused += month.refused_spend
        balance = month.closing_balance
    return RechargeProjection(
        recharges=recharges,
        cash_out=cash_out,
        limit_reached=limit_reached,
        refused_spend=refused,
        first_refused_on=first_refused,
        closing_balance=balance,
    )


# --- Credit lots (OpenAI prepaid credits) ------------------------------------------------------------


def one_year_after(day: date) -> date:
    """Return the same date a year later; 29 February becomes 28 February (the earlier, safe side)."""
    try:
        return day.replace(year=day.year + 1)
    except ValueError:
        return day.replace(year=day.year + 1, day=28)


LotKind = Literal["granted", "paid"]


@dataclass(frozen=True)
class CreditLot:
    ref: str
    kind: LotKind
    amount: Decimal
    credited_on: date
    expires_on: date | None = None  # first day the lot can no longer be used


@dataclass(frozen=True)
class LotState:
    lot: CreditLot
    used: Decimal
    remaining: Decimal  # usable now (0 once expired)
    expired_unused: Decimal  # waste: what the lot still held when it expired


@dataclass(frozen=True)
class CreditLedger:
    lots: list[LotState]
    uncovered: Decimal  # spend that no usable lot covered
    today: date = field(default_factory=date.today)

    @property
    def balance(self) -> Decimal:
        return sum((s.remaining for s in self.lots), ZERO)

    @property
    def wasted(self) -> Decimal:
        return sum((s.expired_unused for s in self.lots), ZERO)

    def expiring_within(self, days: int = EXPIRING_SOON_DAYS) -> list[LotState]:
        horizon = self.today + timedelta(days=days)
        return [
            s
            for s in self.lots
            if s.remaining > 0 and s.lot.expires_on is not None and s.lot.expires_on <= horizon
        ]


def _lot_order(lot: CreditLot) -> tuple[int, date, date, str]:
    # Granted before paid; within a kind, first in first out (then earliest expiry).
    return (0 if lot.kind == "granted" else 1, lot.credited_on, lot.expires_on or date.max, lot.ref)


def credit_lots_consume(
    lots: Sequence[CreditLot], daily_spend: Mapping[date, Decimal], *, today: date
) -> CreditLedger:
    """Spend each day's cost from the lots usable that day: granted credits first, then paid, FIFO.

    A lot is usable from ``credited_on`` until the day before ``expires_on``. Whatever a lot holds
    when it expires (on or before ``today``) is waste, not balance. Spend with no usable lot left
    is ``uncovered`` (the provider would have refused it or billed it elsewhere).
    """
    ordered = sorted(lots, key=_lot_order)
    used = {lot.ref: ZERO for lot in ordered}
    uncovered = ZERO
    for day in sorted(daily_spend):
        if day > today:
            continue
        owed = daily_spend[day]
        for lot in ordered:
            if owed <= 0:
                break
            if lot.credited_on > day or (lot.expires_on is not None and day >= lot.expires_on):
                continue
            take = min(owed, lot.amount - used[lot.ref])
            if take > 0:
                used[lot.ref] += take
                owed -= take
        uncovered += max(owed, ZERO)
    states = []
    for lot in ordered:
        left = lot.amount - used[lot.ref]
        expired = lot.expires_on is not None and lot.expires_on <= today
        states.append(
            LotState(
                lot=lot,
                used=used[lot.ref],
                remaining=ZERO if expired else left,
                expired_unused=left if expired else ZERO,
            )
        )
    return CreditLedger(lots=states, uncovered=uncovered, today=today)
