"""Ledger writes made by people: manual top-ups, CSV import of top-ups, console balance entries.

Ingestion of provider-reported balances and top-ups lives in balances.py / topups.py.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, time
from decimal import Decimal
from typing import IO, cast

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from projects.models import Organization, ProviderAccount, ProviderKind
from projects.money import MoneyError, to_decimal

from ..models import BalanceSnapshot, SnapshotSource, TopUp, TopUpSource, TopUpStatus
from ..rules import one_year_after

IMPORT_COLUMNS = (
    "account",
    "amount",
    "currency",
    "bonus",
    "status",
    "order_ref",
    "payment_method",
    "created_at",
    "credited_at",
    "expires_at",
    "kind",
    "note",
)
REQUIRED_COLUMNS = ("account", "amount", "order_ref", "created_at")
MAX_AMOUNT = Decimal("100000000")


def default_expiry(*, account: ProviderAccount, purchased_at: datetime) -> datetime | None:
    """OpenAI prepaid credits expire one year after purchase; other providers' credits do not."""
    if account.kind != ProviderKind.OPENAI:
        return None
    expires_day = one_year_after(purchased_at.date())
    return purchased_at.replace(year=expires_day.year, month=expires_day.month, day=expires_day.day)


@transaction.atomic
def topup_record(
    *,
    account: ProviderAccount,
    amount: Decimal,
    created_at: datetime,
    currency: str | None = None,
    bonus: Decimal = Decimal(0),
    status: str = TopUpStatus.CREDITED,
    order_ref: str = "",
    payment_method: str = "",
    credited_at: datetime | None = None,
    expires_at: datetime | None = None,
    is_grant: bool = False,
    is_auto_recharge: bool = False,
    note: str = "",
    source: str = TopUpSource.MANUAL,
) -> TopUp:
    """Record a top-up entered by a person (or an import row) and return it.

    Credited top-ups without a credited time count from their purchase time; OpenAI credits get
    the one-year expiry unless one is given. Raises IntegrityError on a repeated order reference.
    """
    if status == TopUpStatus.CREDITED and credited_at is None:
        credited_at = created_at
    if expires_at is None:
        expires_at = default_expiry(account=account, purchased_at=created_at)
    return TopUp.objects.create(
        provider_account=account,
        amount=amount,
        currency=currency or account.currency,
        bonus=bonus,
        status=status,
        source=TopUpSource.GRANT if is_grant else source,
        order_ref=order_ref,
        payment_method=payment_method,
        created_at=created_at,
        credited_at=credited_at,
        expires_at=expires_at,
        is_auto_recharge=is_auto_recharge,
        note=note,
    )


def balance_snapshot_record_manual(
    *, account: ProviderAccount, remaining: Decimal, taken_at: datetime
) -> BalanceSnapshot:
    """Store a balance a user read off the provider console (``source="manual"``), in the account currency."""
    snapshot, _ = BalanceSnapshot.objects.update_or_create(
        provider_account=account,
        taken_at=taken_at,
        currency=account.currency,
        source=SnapshotSource.MANUAL,
        defaults={"remaining": remaining},
    )
    return snapshot


# --- CSV import -------------------------------------------------------------------------------------


@dataclass
class ImportResult:
    created: int = 0
    duplicates: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


class RowError(ValueError):
    pass


def _amount(value: str, name: str, *, required: bool) -> Decimal:
    if not value.strip():
        if required:
            raise RowError(f"{name} is missing")
        return Decimal(0)
    try:
        amount = to_decimal(value.strip())
    except MoneyError as exc:
        raise RowError(f"{name} {value.strip()[:40]!r} is not a number") from exc
    if amount < 0:
        raise RowError(f"{name} must not be negative")
    if amount > MAX_AMOUNT:
        raise RowError(f"{name} is larger than {MAX_AMOUNT}")
    return amount


def _moment(value: str, name: str, organization: Organization, *, required: bool) -> datetime | None:
    text = value.strip()
    if not text:
        if required:
            raise RowError(f"{name} is missing")
        return None
    try:
        parsed = parse_datetime(text)
        if parsed is None:
            day = parse_date(text)
            if day is None:
                raise ValueError
            parsed = datetime.combine(day, time.min)
    except ValueError as exc:
        raise RowError(f"{name} {text[:40]!r} is not a date (use YYYY-MM-DD or ISO 8601)") from exc
    if timezone.is_naive(parsed):
        # Naive times are the organization's, like every day on its pages.
        parsed = parsed.replace(tzinfo=organization.zoneinfo)
    return parsed


def _row_to_kwargs(
    row: dict[str, str], *, organization: Organization, accounts: dict[str, ProviderAccount]
) -> dict[str, object]:
    def get(name: str) -> str:
        return (row.get(name) or "").strip()

    account = accounts.get(get("account"))
    if account is None:
        raise RowError(f"unknown account {get('account')[:60]!r}")
    order_ref = get("order_ref")
    if not order_ref:
        raise RowError("order_ref is missing (it is what makes a re-import add nothing)")
    if len(order_ref) > 200:
        raise RowError("order_ref is longer than 200 characters")
    status = get("status").lower() or TopUpStatus.CREDITED
    if status not in TopUpStatus.values:
        raise RowError(f"status {status[:20]!r} is not one of {', '.join(TopUpStatus.values)}")
    currency = get("currency").upper() or account.currency
    if len(currency) != 3 or not currency.isalpha():
        raise RowError(f"currency {currency[:10]!r} is not a three-letter code")
    kind = get("kind").lower() or "paid"
    if kind not in {"paid", "grant"}:
        raise RowError("kind must be paid or grant")
    return {
        "account": account,
        "amount": _amount(get("amount"), "amount", required=True),
        "bonus": _amount(get("bonus"), "bonus", required=False),
        "currency": currency,
        "status": status,
        "order_ref": order_ref,
        "payment_method": get("payment_method")[:64],
        "created_at": _moment(get("created_at"), "created_at", organization, required=True),
        "credited_at": _moment(get("credited_at"), "credited_at", organization, required=False),
        "expires_at": _moment(get("expires_at"), "expires_at", organization, required=False),
        "is_grant": kind == "grant",
        "note": get("note")[:300],
        "source": TopUpSource.IMPORT,
    }


def topups_import_csv(*, organization: Organization, stream: IO[bytes] | IO[str]) -> ImportResult:
    """Import top-ups from a CSV stream; return counts and per-row errors with line numbers.

    Good rows land even when others fail; a row whose (account, order_ref) already exists is a
    duplicate and adds nothing, so importing the same file twice equals importing it once.
    Columns: see IMPORT_COLUMNS (``account`` is the account slug). Each row commits on its own.
    """
    text: Iterable[str]
    if isinstance(stream.read(0), bytes):
        text = io.TextIOWrapper(cast("IO[bytes]", stream), encoding="utf-8-sig", newline="")
    else:
        text = cast("IO[str]", stream)
    result = ImportResult()
    reader = csv.DictReader(text)
    try:
        header = [name.strip().lower() for name in reader.fieldnames or []]
    except (UnicodeDecodeError, csv.Error) as exc:
        result.errors.append((1, f"cannot read the header: {exc}"))
        return result
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        result.errors.append((1, f"missing column(s): {', '.join(missing)}"))
        return result
    reader.fieldnames = header
    accounts = {a.slug: a for a in ProviderAccount.objects.filter(organization=organization)}
    existing = {
        (account_id, ref)
        for account_id, ref in TopUp.objects.filter(provider_account__organization=organization)
        .exclude(order_ref="")
        .values_list("provider_account_id", "order_ref")
    }
    line = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except (UnicodeDecodeError, csv.Error) as exc:
            result.errors.append((reader.line_num, f"unreadable row: {exc}"))
            break
        line = reader.line_num
        if None in row:
            result.errors.append((line, "more fields than the header has columns"))
            continue
        try:
            kwargs = _row_to_kwargs(row, organization=organization, accounts=accounts)
        except RowError as exc:
            result.errors.append((line, str(exc)))
            continue
        key = (cast(ProviderAccount, kwargs["account"]).pk, str(kwargs["order_ref"]))
        if key in existing:
            result.duplicates += 1
            continue
        try:
            with transaction.atomic():
                topup_record(**kwargs)  # type: ignore[arg-type]
        except IntegrityError:
            # Another import of the same file got there first.
            result.duplicates += 1
            continue
        existing.add(key)
        result.created += 1
    return result
