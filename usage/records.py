"""The documented usage record (push API body, CSV/JSONL import columns) and its checks.

One pydantic model validates a record whatever the transport, so the push API and the file import
accept and reject exactly the same things. ``check_row`` holds the limits the database enforces, so
no row that reaches ``usage_rows_upsert`` can fail there (a failed row would sink its whole batch).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from projects.models import ProviderKind
from projects.money import to_decimal

from .providers.base import UsageRow

MAX_TOKENS = 10**15
MAX_INT32 = 2**31 - 1
# Stored as int64 of 1e-10 units: 8 integer digits keep every row far from overflow.
COST_PATTERN = r"^[0-9]{1,8}(\.[0-9]{1,18})?$"
# No control characters: PostgreSQL refuses NUL in text, and the others only make trouble in exports.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
PROVIDER_KINDS = tuple(ProviderKind.values)


class InvalidNumber:
    """Stands in for a JSON number we refuse (NaN, Infinity, a 5,000-digit integer), so that only the
    record holding it is rejected instead of the whole body."""

    def __init__(self, text: str) -> None:
        self.text = text[:20]

    def __repr__(self) -> str:
        return f"InvalidNumber({self.text!r})"


def loads_records(text: str | bytes) -> Any:
    """Parse JSON exactly: floats as Decimal; NaN, Infinity and >40-digit integers as InvalidNumber.

    Raises ValueError (json.JSONDecodeError, UnicodeDecodeError) for text that is not JSON.
    """

    def parse_int(digits: str) -> int | InvalidNumber:
        return InvalidNumber(digits) if len(digits.lstrip("-")) > 40 else int(digits)

    def parse_float(text: str) -> Decimal | InvalidNumber:
        # Reject absurd exponents (1e400) before Decimal gives us an astronomically scaled value.
        value = Decimal(text)
        if not value.is_finite() or abs(value.adjusted()) > 40:
            return InvalidNumber(text)
        return value

    return json.loads(text, parse_int=parse_int, parse_float=parse_float, parse_constant=InvalidNumber)


# "7.243E-7": what Python's str(Decimal) gives for small amounts, so clients send it.
_EXPONENT_COST = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,20})?[eE][-+]?[0-9]{1,2}$")


def _cost_text(value: Any) -> Any:
    # JSON numbers arrive as exact Decimals; the documented form is a decimal string. A string in
    # exponent form is the same exact amount: written out in full, then held to COST_PATTERN.
    if isinstance(value, str) and _EXPONENT_COST.match(value.strip()):
        value = Decimal(value.strip())
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else "NaN"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


Text = Annotated[str, Field(pattern=TEXT_PATTERN)]
Tokens = Annotated[int, Field(ge=0, le=MAX_TOKENS)]


class UsageRecordIn(BaseModel):
    """One request (or pre-aggregated bucket) as a client reports it.

    Token convention: ``input_tokens`` *includes* ``cached_input_tokens`` and ``cache_write_tokens``;
    ``output_tokens`` includes ``reasoning_tokens`` (OpenAI's convention).
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    request_id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=200,
            pattern=TEXT_PATTERN,
            description="Client idempotency key: a record re-sent with the same id is not counted again.",
        ),
    ]
    occurred_at: Annotated[AwareDatetime, Field(description="ISO 8601 with a UTC offset.")]
    model: Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)]
    input_tokens: Tokens = 0
    cached_input_tokens: Tokens = 0
    cache_write_tokens: Tokens = 0
    output_tokens: Tokens = 0
    reasoning_tokens: Tokens = 0
    requests: Annotated[int, Field(ge=0, le=MAX_INT32)] = 1
    cost: Annotated[
        Annotated[str, Field(pattern=COST_PATTERN)] | None,
        BeforeValidator(_cost_text),
        Field(description='Decimal string in `currency`, e.g. "0.0123". Omit to price from the price list.'),
    ] = None
    currency: Annotated[str, BeforeValidator(_upper), Field(pattern=r"^[A-Z]{3}$")] = "USD"
    provider: Annotated[
        Literal[PROVIDER_KINDS] | None,  # type: ignore[valid-type]
        Field(description="Provider kind whose price list prices a record without a cost."),
    ] = None
    project: Annotated[
        str | None,
        Field(
            pattern=r"^[-a-zA-Z0-9_]{1,60}$",
            description="Project slug. Must be the token's project when the token is limited to one.",
        ),
    ] = None
    api_key: Annotated[
        str | None, Field(min_length=1, max_length=200, pattern=TEXT_PATTERN, description="Key name.")
    ] = None
    status: Literal["success", "error"] = "success"
    error_code: Annotated[str, Field(max_length=64, pattern=TEXT_PATTERN)] = ""
    latency_ms: Annotated[int | None, Field(ge=0, le=MAX_INT32)] = None


class RecordError(ValueError):
    """A record that cannot be stored; the message is the reason shown to the client (no input echoed)."""


def describe_validation_error(exc: ValidationError) -> str:
    """Return the first problem of a pydantic error as ``field: message``, short and without the input."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False)[:3]:
        where = ".".join(str(part) for part in error["loc"]) or "record"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)[:300]


def record_from_mapping(data: Any) -> UsageRecordIn:
    """Validate one record (a dict from JSON or a CSV row); raise RecordError with the reason."""
    if not isinstance(data, dict):
        raise RecordError("record must be a JSON object")
    for name, value in data.items():
        if isinstance(value, InvalidNumber):
            raise RecordError(f"{name}: number out of range or not finite")
    try:
        return UsageRecordIn.model_validate(data)
    except ValidationError as exc:
        raise RecordError(describe_validation_error(exc)) from None


def row_from_record(record: UsageRecordIn, *, project_slug: str = "") -> UsageRow:
    """Return the UsageRow for a validated record (the record's project wins over ``project_slug``)."""
    if not _in_range(record.occurred_at):
        raise RecordError("occurred_at: must be between 2000-01-01 and 2100-01-01")
    row = UsageRow(
        occurred_at=record.occurred_at.astimezone(UTC),
        model=record.model,
        natural_key=record.request_id,
        input_tokens=record.input_tokens,
        cache_read_tokens=record.cached_input_tokens,
        cache_write_tokens=record.cache_write_tokens,
        output_tokens=record.output_tokens,
        reasoning_tokens=record.reasoning_tokens,
        requests=record.requests,
        cost=to_decimal(record.cost) if record.cost is not None else None,
        currency=record.currency,
        status=record.status,
        error_code=record.error_code,
        latency_ms=record.latency_ms,
        key_external_id=record.api_key or "",
        key_name=record.api_key or "",
        project_slug=record.project or project_slug,
    )
    check_row(row)
    return row


def _in_range(moment: datetime) -> bool:
    try:
        return EARLIEST <= moment < LATEST
    except OverflowError:
        return False


# Control characters, and lone surrogates (invalid UTF-8 read with errors="surrogateescape").
_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def _has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def check_row(row: UsageRow) -> None:
    """Raise RecordError if the database would refuse the row or the token convention is broken."""
    if row.occurred_at.tzinfo is None or not _in_range(row.occurred_at):
        raise RecordError("occurred_at: must be between 2000-01-01 and 2100-01-01 with a UTC offset")
    counts = {
        "input_tokens": row.input_tokens,
        "cached_input_tokens": row.cache_read_tokens,
        "cache_write_tokens": row.cache_write_tokens,
        "output_tokens": row.output_tokens,
        "reasoning_tokens": row.reasoning_tokens,
    }
    for name, value in counts.items():
        if not 0 <= value <= MAX_TOKENS:
            raise RecordError(f"{name}: must be between 0 and {MAX_TOKENS}")
    if row.cache_read_tokens + row.cache_write_tokens > row.input_tokens:
        raise RecordError("cached_input_tokens + cache_write_tokens: must not exceed input_tokens")
    if row.reasoning_tokens > row.output_tokens:
        raise RecordError("reasoning_tokens: must not exceed output_tokens (it is a part of them)")
    if not 0 <= row.requests <= MAX_INT32:
        raise RecordError(f"requests: must be between 0 and {MAX_INT32}")
    if row.latency_ms is not None and not 0 <= row.latency_ms <= MAX_INT32:
        raise RecordError(f"latency_ms: must be between 0 and {MAX_INT32}")
    if row.cost is not None and (not row.cost.is_finite() or abs(row.cost) >= Decimal("100000000")):
        raise RecordError("cost: must be a finite amount below 100,000,000")
    if row.raw_quota is not None and abs(row.raw_quota) >= 2**62:
        raise RecordError("quota: out of range")
    texts = {
        "model": (row.model, 200),
        "request_id": (row.natural_key, 1000),
        "api_key": (row.key_external_id, 200),
        "error_code": (row.error_code, 64),
    }
    for name, (text, limit) in texts.items():
        if len(text) > limit:
            raise RecordError(f"{name}: longer than {limit} characters")
        if _has_control(text):
            raise RecordError(f"{name}: contains control characters or invalid UTF-8")
    if not row.model:
        raise RecordError("model: must not be empty")
    if len(row.currency) != 3 or not row.currency.isalpha() or not row.currency.isupper():
        raise RecordError("currency: must be a three-letter ISO 4217 code")
