"""Month close: freeze a month's figures into a statement, reopen it explicitly, and show restatements.

A closed statement is never edited. Data that arrives later for a closed month (late provider rows,
revisions) shows up as a restatement delta (live - frozen, per line) next to the frozen figures;
changing the filed figures takes a reopen (reason required, audited) and a new close (next version).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max, Sum
from django.utils import timezone

from projects.models import Organization
from projects.money import DISPLAY_ROUNDING, QUANTUM, STORAGE_ROUNDING
from usage.models import UsageDaily

from .. import rules
from ..models import MonthEvent, MonthEventKind, MonthStatement, StatementLine, StatementStatus

ZERO = Decimal(0)
CENT = Decimal("0.01")
TOKEN_FIELDS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)


class StatementError(ValueError):
    """A close or reopen that is not allowed (open month, already closed, no reason given...)."""


LineKey = tuple[int | None, int | None, str, str]  # (project id, account id, model, currency)


@dataclass(frozen=True)
class LineFigures:
    """Spend of one (project, provider account, model, currency) over a month, exact."""

    project_id: int | None
    project_name: str
    account_id: int | None
    account_name: str
    model: str
    currency: str
    cost: Decimal
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    requests: int = 0

    @property
    def key(self) -> LineKey:
        return (self.project_id, self.account_id, self.model, self.currency)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def live_lines(*, organization: Organization, month: date) -> list[LineFigures]:
    """Return the month's current figures per line, from the daily rollup (local days); one query."""
    first, last = rules.month_bounds(month)
    rows = (
        UsageDaily.objects.filter(organization=organization, day__gte=first, day__lte=last)
        .values(
            "project_id",
            "project__name",
            "provider_account_id",
            "provider_account__name",
            "model",
            "currency",
        )
        .annotate(
            sum_cost=Sum("cost"),
            sum_requests=Sum("requests"),
            sum_input_tokens=Sum("input_tokens"),
            sum_cache_read_tokens=Sum("cache_read_tokens"),
            sum_cache_write_tokens=Sum("cache_write_tokens"),
            sum_output_tokens=Sum("output_tokens"),
            sum_reasoning_tokens=Sum("reasoning_tokens"),
        )
        .order_by("currency", "project__name", "model", "provider_account__name")
    )
    return [
        LineFigures(
            project_id=r["project_id"],
            project_name=r["project__name"] or "",
            account_id=r["provider_account_id"],
            account_name=r["provider_account__name"] or "",
            model=r["model"],
            currency=r["currency"],
            cost=r["sum_cost"] or ZERO,
            requests=r["sum_requests"] or 0,
            input_tokens=r["sum_input_tokens"] or 0,
            cache_read_tokens=r["sum_cache_read_tokens"] or 0,
            cache_write_tokens=r["sum_cache_write_tokens"] or 0,
            output_tokens=r["sum_output_tokens"] or 0,
            reasoning_tokens=r["sum_reasoning_tokens"] or 0,
        )
        for r in rows
    ]


def _exact(amount: Decimal) -> str:
    """Canonical text of an amount at storage precision, so 1.1 and 1.10 hash alike."""
    return format(amount.quantize(QUANTUM, rounding=STORAGE_ROUNDING), "f")


def lines_hash(*, organization: Organization, month: date, lines: Iterable[LineFigures]) -> str:
    """Return the sha256 of the canonical text of the lines (sorted; names excluded, ids included).

    Names are left out so that renaming a project does not look like a changed statement.
    """
    digest = hashlib.sha256(f"quotaboard-statement-v1|{organization.pk}|{month:%Y-%m}\n".encode())
    canonical = sorted(
        "|".join(
            [
                str(line.project_id or ""),
                str(line.account_id or ""),
                line.model,
                line.currency,
                _exact(line.cost),
                *(str(getattr(line, name)) for name in TOKEN_FIELDS),
                str(line.requests),
            ]
        )
        for line in lines
    )
    for text in canonical:
        digest.update(text.encode() + b"\n")
    return digest.hexdigest()


def statement_lines(statement: MonthStatement) -> list[LineFigures]:
    """Return the frozen lines of a statement as LineFigures; one query."""
    return [
        LineFigures(
            project_id=line.project_id,
            project_name=line.project_name,
            account_id=line.provider_account_id,
            account_name=line.account_name,
            model=line.model,
            currency=line.currency,
            cost=line.cost,
            requests=line.requests,
            **{name: getattr(line, name) for name in TOKEN_FIELDS},
        )
        for line in statement.lines.all()
    ]


def statement_verify(statement: MonthStatement) -> bool:
    """True when the stored lines still hash to the hash taken at close time."""
    lines = statement_lines(statement)
    return lines_hash(organization=statement.organization, month=statement.month, lines=lines) == (
        statement.content_hash
    )


def _totals(lines: Iterable[LineFigures]) -> dict[str, dict[str, str | int]]:
    """Per-currency totals as exact strings, plus the cost rounded once (half up to cents) for filing."""
    sums: dict[str, dict[str, Decimal | int]] = {}
    for line in lines:
        acc = sums.setdefault(line.currency, {"cost": ZERO, "requests": 0, "tokens": 0})
        acc["cost"] = Decimal(acc["cost"]) + line.cost
        acc["requests"] = int(acc["requests"]) + line.requests
        acc["tokens"] = int(acc["tokens"]) + line.tokens
    return {
        currency: {
            "cost": _exact(Decimal(acc["cost"])),
            "cost_rounded": str(Decimal(acc["cost"]).quantize(CENT, rounding=DISPLAY_ROUNDING)),
            "rounding": "ROUND_HALF_UP to 0.01",
            "requests": int(acc["requests"]),
            "tokens": int(acc["tokens"]),
        }
        for currency, acc in sorted(sums.items())
    }


def current_statement(*, organization: Organization, month: date) -> MonthStatement | None:
    """Return the month's latest statement (closed, or the last one reopened), or None."""
    return (
        MonthStatement.objects.filter(organization=organization, month=month)
        .select_related("closed_by", "reopened_by")
        .order_by("-version")
        .first()
    )


@transaction.atomic
def period_close(
    *, organization: Organization, month: date, user: User | None, today: date | None = None
) -> MonthStatement:
    """Freeze the month: copy every live line into a new statement version and hash it.

    1. Lock the organization row, so two closes of one month serialise (the loser sees "already closed").
    2. Refuse months that have not ended in the organization's zone.
    3. Copy the rollup's lines, store per-currency totals and the sha256, and write the audit row.
    Raises StatementError; returns the new statement.
    """
    month = month.replace(day=1)
    Organization.objects.select_for_update().filter(pk=organization.pk).first()
    today = today or timezone.now().astimezone(organization.zoneinfo).date()
    _first, last = rules.month_bounds(month)
    if today <= last:
        raise StatementError(
            f"{month:%B %Y} has not ended yet; it can be closed from {rules.add_months(month, 1)}."
        )
    existing = MonthStatement.objects.filter(organization=organization, month=month)
    if existing.filter(status=StatementStatus.CLOSED).exists():
        raise StatementError(f"{month:%B %Y} is already closed.")
    version = (existing.aggregate(v=Max("version"))["v"] or 0) + 1
    lines = live_lines(organization=organization, month=month)
    content_hash = lines_hash(organization=organization, month=month, lines=lines)
    statement = MonthStatement.objects.create(
        organization=organization,
        month=month,
        version=version,
        status=StatementStatus.CLOSED,
        closed_by=user,
        closed_at=timezone.now(),
        totals=_totals(lines),
        content_hash=content_hash,
    )
    StatementLine.objects.bulk_create(
        [
            StatementLine(
                statement=statement,
                project_id=line.project_id,
                project_name=line.project_name[:120],
                provider_account_id=line.account_id,
                account_name=line.account_name[:120],
                model=line.model,
                currency=line.currency,
                cost=line.cost,
                requests=line.requests,
                **{name: getattr(line, name) for name in TOKEN_FIELDS},
            )
            for line in lines
        ],
        batch_size=1000,
    )
    MonthEvent.objects.create(
        organization=organization,
        month=month,
        kind=MonthEventKind.CLOSED,
        statement=statement,
        user=user,
        content_hash=content_hash,
    )
    return statement


@transaction.atomic
def period_reopen(
    *, organization: Organization, month: date, user: User | None, reason: str
) -> MonthStatement:
    """Reopen a closed month (reason required): the statement is kept, marked reopened, and audited.

    The frozen lines stay as they were filed; closing again creates the next version.
    """
    month = month.replace(day=1)
    reason = reason.strip()
    if not reason:
        raise StatementError("Give a reason for reopening the month.")
    Organization.objects.select_for_update().filter(pk=organization.pk).first()
    statement = MonthStatement.objects.filter(
        organization=organization, month=month, status=StatementStatus.CLOSED
    ).first()
    if statement is None:
        raise StatementError(f"{month:%B %Y} is not closed.")
    statement.status = StatementStatus.REOPENED
    statement.reopened_by = user
    statement.reopened_at = timezone.now()
    statement.reopen_reason = reason[:2000]
    statement.save(update_fields=["status", "reopened_by", "reopened_at", "reopen_reason"])
    MonthEvent.objects.create(
        organization=organization,
        month=month,
        kind=MonthEventKind.REOPENED,
        statement=statement,
        user=user,
        reason=reason[:2000],
        content_hash=statement.content_hash,
    )
    return statement


@dataclass(frozen=True)
class LineDelta:
    """Live minus frozen for one line; ``frozen`` None for a line that did not exist at close."""

    live: LineFigures | None
    frozen: LineFigures | None

    def _get(self, which: LineFigures | None, name: str) -> Decimal | int:
        if which is None:
            return ZERO if name == "cost" else 0
        value: Decimal | int = getattr(which, name)
        return value

    @property
    def line(self) -> LineFigures:
        line = self.live or self.frozen
        assert line is not None
        return line

    @property
    def cost(self) -> Decimal:
        return Decimal(self._get(self.live, "cost")) - Decimal(self._get(self.frozen, "cost"))

    @property
    def requests(self) -> int:
        return int(self._get(self.live, "requests")) - int(self._get(self.frozen, "requests"))

    @property
    def tokens(self) -> int:
        live = self.live.tokens if self.live else 0
        frozen = self.frozen.tokens if self.frozen else 0
        return live - frozen


def restatement_delta(*, statement: MonthStatement, live: list[LineFigures] | None = None) -> list[LineDelta]:
    """Return the lines where today's figures differ from the frozen ones (live - frozen), largest first.

    An empty list means the statement still matches the data. Two queries (frozen lines, live rollup).
    """
    frozen = {line.key: line for line in statement_lines(statement)}
    current = {
        line.key: line
        for line in (
            live
            if live is not None
            else live_lines(organization=statement.organization, month=statement.month)
        )
    }
    deltas = []
    for key in sorted(set(frozen) | set(current), key=lambda k: (k[3], str(k[0]), k[2], str(k[1]))):
        delta = LineDelta(live=current.get(key), frozen=frozen.get(key))
        if delta.cost or delta.requests or _token_diff(delta):
            deltas.append(delta)
    deltas.sort(key=lambda d: (d.line.currency, -abs(d.cost)))
    return deltas


def _token_diff(delta: LineDelta) -> bool:
    return any(
        (getattr(delta.live, name) if delta.live else 0)
        != (getattr(delta.frozen, name) if delta.frozen else 0)
        for name in TOKEN_FIELDS
    )


def delta_totals(deltas: Iterable[LineDelta]) -> dict[str, Decimal]:
    """Sum of the restatement per currency (exact)."""
    totals: dict[str, Decimal] = {}
    for delta in deltas:
        totals[delta.line.currency] = totals.get(delta.line.currency, ZERO) + delta.cost
    return totals
