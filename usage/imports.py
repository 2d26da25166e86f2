"""Streaming file import: CSV/JSONL in our record columns, New API log exports, OpenAI usage exports.

The file is read incrementally (a csv reader over a text wrapper, JSONL line by line, lines capped
in length) and upserted in batches through ``usage_rows_upsert``, so a 1 GB file imports in bounded
memory. Every rejected row is written to a CSV error report as (line, column, reason) the moment it
is seen; good rows land; importing the same file again adds nothing (every format has a natural key).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

from django.conf import settings
from django.utils import timezone

from projects.models import ImportFormat, ImportJob, ImportStatus, Organization, Project, ProviderAccount
from projects.money import MoneyError

from .models import RecordSource
from .providers.base import UsageRow
from .push import push_namespace
from .records import (
    InvalidNumber,
    RecordError,
    UsageRecordIn,
    check_row,
    loads_records,
    record_from_mapping,
    row_from_record,
)
from .services import local_day, rollup_refresh_days, usage_rows_upsert

logger = logging.getLogger(__name__)

BATCH_ROWS = 2000
# Longest line read at once; a longer one is skipped and reported (a 1 GB file with no newline must
# not become one 1 GB string). csv's own field limit (131,072 characters) still applies within it.
MAX_LINE_CHARS = 1024 * 1024
RECORD_COLUMNS = tuple(UsageRecordIn.model_fields)
REQUIRED_COLUMNS = ("request_id", "occurred_at", "model")
ERROR_HEADER = ("line", "column", "reason")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\0")


@dataclass(frozen=True)
class BadRow:
    line: int
    column: str
    reason: str


@dataclass
class ImportProgress:
    bytes_read: int = 0
    rows: int = 0
    good: int = 0
    bad: int = 0
    new: int = 0
    duplicates: int = 0
    days: set[date] = field(default_factory=set)


class ImportAborted(Exception):
    """The file cannot be imported at all (unknown format, a header without the required columns)."""


def neutralise_cell(value: str) -> str:
    """Return a text cell that spreadsheets will not run as a formula (OWASP ASVS 1.2.10)."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


class ErrorReport:
    """Appends (line, column, reason) rows to a CSV file as they are found; nothing kept in memory."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(ERROR_HEADER)

    def add(self, bad: BadRow) -> None:
        self._writer.writerow([bad.line, neutralise_cell(bad.column), neutralise_cell(bad.reason)])

    def close(self) -> None:
        self._file.close()


class LineReader:
    """Yield text lines of at most MAX_LINE_CHARS; an over-long line is skipped, noted, and yielded empty."""

    def __init__(self, text: IO[str]) -> None:
        self.text = text
        self.line_no = 0
        self.too_long: set[int] = set()

    def __iter__(self) -> Iterator[str]:
        while True:
            line = self.text.readline(MAX_LINE_CHARS)
            if not line:
                return
            self.line_no += 1
            if len(line) >= MAX_LINE_CHARS and not line.endswith(("\n", "\r")):
                while True:
                    rest = self.text.readline(MAX_LINE_CHARS)
                    if not rest or rest.endswith(("\n", "\r")):
                        break
                self.too_long.add(self.line_no)
                yield "\n"
                continue
            yield line


def _column_of(reason: str, known: tuple[str, ...]) -> str:
    """Return the column a reason starts with ("input_tokens: ..."), or "" for row-level problems."""
    if ":" not in reason:
        return ""
    head = reason.split(":", 1)[0]
    # Unknown JSON keys are named too ("colour: Extra inputs are not permitted").
    return head if head in known or (head.isidentifier() and len(head) <= 60) else ""


def detect_format(head: bytes, filename: str = "") -> str:
    """Guess the format from the first bytes and the file name (explicit formats always win)."""
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \r\n\t")
    if text.startswith(("{", "[")):
        # Keys, not values: our own records may say "status": "success"; a New API page has "success": true.
        if re.search(r'"(model_name|prompt_tokens|success)"\s*:', text):
            return ImportFormat.NEWAPI
        if '"num_model_requests"' in text:
            return ImportFormat.OPENAI
        return ImportFormat.JSONL
    first_line = text.split("\n", 1)[0]
    if "num_model_requests" in first_line:
        return ImportFormat.OPENAI
    if filename.lower().endswith((".jsonl", ".ndjson", ".json")):
        return ImportFormat.JSONL
    return ImportFormat.CSV


Parsed = tuple[int, UsageRow | BadRow, str | None]


class Parser:
    """Turn one file into (line, UsageRow | BadRow, provider kind for pricing) items, lazily."""

    def __init__(self, *, organization: Organization, account: ProviderAccount | None, fmt: str) -> None:
        self.organization = organization
        self.account = account
        self.fmt = fmt
        self.project_slugs = set(
            Project.objects.filter(organization=organization).values_list("slug", flat=True)
        )

    # Our columns (CSV and JSONL) ----------------------------------------------------------------

    def _record_row(self, line: int, data: dict[str, Any]) -> Parsed:
        try:
            record = record_from_mapping(data)
            if record.project and record.project not in self.project_slugs:
                raise RecordError(f"project: no project '{record.project}' in this organization")
            return line, row_from_record(record), record.provider
        except RecordError as exc:
            reason = str(exc)
            return line, BadRow(line, _column_of(reason, RECORD_COLUMNS), reason), None

    def parse_csv(self, lines: LineReader) -> Iterator[Parsed]:
        reader = csv.reader(lines)
        header: list[str] | None = None
        last_line = 0
        while True:
            start = last_line + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                last_line = reader.line_num
                yield start, BadRow(start, "", f"malformed CSV: {str(exc)[:120]}"), None
                continue
            last_line = reader.line_num
            if not cells or cells == [""]:
                if start in lines.too_long:
                    yield start, BadRow(start, "", f"line longer than {MAX_LINE_CHARS} characters"), None
                continue
            if header is None:
                header = [cell.strip().lstrip("\ufeff") for cell in cells]
                self._check_header(header)
                continue
            if len(cells) != len(header):
                reason = f"row has {len(cells)} fields, the header has {len(header)}"
                yield start, BadRow(start, "", reason), None
                continue
            data = {name: value for name, value in zip(header, cells, strict=True) if value.strip() != ""}
            if self.fmt == ImportFormat.OPENAI:
                yield self._openai_row(start, data)
            else:
                yield self._record_row(start, data)

    def _check_header(self, header: list[str]) -> None:
        if self.fmt == ImportFormat.OPENAI:
            required: tuple[str, ...] = ("start_time", "model", "num_model_requests")
            unknown: list[str] = []
        else:
            required = REQUIRED_COLUMNS
            unknown = [name for name in header if name not in RECORD_COLUMNS]
        missing = [name for name in required if name not in header]
        duplicated = [name for name, n in Counter(header).items() if n > 1]
        problems = []
        if missing:
            problems.append("missing column(s): " + ", ".join(missing))
        if unknown:
            problems.append("unknown column(s): " + ", ".join(name[:40] for name in unknown[:5]))
        if duplicated:
            problems.append("repeated column(s): " + ", ".join(name[:40] for name in duplicated[:5]))
        if problems:
            raise ImportAborted("; ".join(problems))

    def parse_jsonl(self, lines: LineReader) -> Iterator[Parsed]:
        seen: Counter[str] = Counter()
        connector = self._newapi_connector() if self.fmt == ImportFormat.NEWAPI else None
        for text in lines:
            line = lines.line_no
            if line in lines.too_long:
                yield line, BadRow(line, "", f"line longer than {MAX_LINE_CHARS} characters"), None
                continue
            if not text.strip():
                continue
            try:
                data = loads_records(text)
            except (ValueError, RecursionError):
                yield line, BadRow(line, "", "not valid JSON"), None
                continue
            if self.fmt == ImportFormat.JSONL:
                yield self._record_row(line, data)
            elif self.fmt == ImportFormat.OPENAI:
                for where, item in _expand(data, "results"):
                    yield self._prefixed(where, self._openai_row(line, item))
            else:
                for where, item in _expand(data, "items"):
                    parsed = self._newapi_row(line, item, connector, seen)
                    if parsed is not None:
                        yield self._prefixed(where, parsed)

    @staticmethod
    def _prefixed(where: str, parsed: Parsed) -> Parsed:
        line, result, kind = parsed
        if where and isinstance(result, BadRow):
            column = f"{where}.{result.column}" if result.column else where
            return line, BadRow(result.line, column, result.reason), kind
        return parsed

    # New API / One API log items ------------------------------------------------------------------

    def _newapi_connector(self) -> Any:
        # The connector's own parser, so that an import for an account and the account's scheduled
        # ingestion produce the same natural keys (and never count a request twice).
        from .providers.base import AccountConfig
        from .providers.newapi import NewApiConnector, OneApiConnector

        account = self.account
        kind = account.kind if account else "newapi"
        cls = OneApiConnector if kind == "oneapi" else NewApiConnector
        config = AccountConfig(
            kind=kind,
            base_url="http://127.0.0.1:9",
            credential="",
            quota_per_unit=account.quota_per_unit if account else 500_000,
            currency=account.currency if account else "USD",
        )
        connector = cls(config)
        connector.close()  # no network: only parse_log is used
        return connector

    def _newapi_row(self, line: int, item: Any, connector: Any, seen: Counter[str]) -> Parsed | None:
        """Return the parsed item, or None for log types that are not usage (top-up, manage, system)."""
        from .providers.http import ProviderError

        if not isinstance(item, dict):
            return line, BadRow(line, "", "log item must be a JSON object"), None
        for name, value in item.items():
            if isinstance(value, InvalidNumber):
                return line, BadRow(line, name[:40], "number out of range or not finite"), None
        try:
            row = connector.parse_log(item, seen)
            if row is None:
                return None
            check_row(row)
        except RecordError as exc:
            return line, BadRow(line, "", str(exc)), None
        except (ProviderError, MoneyError, ValueError, OverflowError, ArithmeticError, TypeError) as exc:
            return line, BadRow(line, "", f"unreadable log item: {str(exc)[:150]}"), None
        return line, row, None

    # OpenAI usage export buckets ------------------------------------------------------------------

    def _openai_row(self, line: int, item: Any) -> Parsed:
        if not isinstance(item, dict):
            return line, BadRow(line, "", "bucket row must be a JSON object"), None
        try:
            start = _moment(item.get("start_time"), "start_time")
            end = _moment(item["end_time"], "end_time") if item.get("end_time") not in (None, "") else None
            bucket = int((end - start).total_seconds()) if end else 86400
            if bucket <= 0:
                raise RecordError("end_time: must be after start_time")
            model = _text(item.get("model"), "model") or "unknown"
            project_id = _text(item.get("project_id"), "project_id")
            key_id = _text(item.get("api_key_id"), "api_key_id")
            parts = [
                start.isoformat(),
                str(bucket),
                project_id,
                key_id,
                model,
                _text(item.get("user_id"), "user_id"),
                _text(item.get("batch"), "batch"),
                _text(item.get("service_tier"), "service_tier"),
            ]
            row = UsageRow(
                occurred_at=start,
                bucket_seconds=bucket,
                model=model,
                natural_key="openai-bucket|" + "|".join(parts),
                input_tokens=_count(item, "input_tokens"),
                cache_read_tokens=_count(item, "input_cached_tokens"),
                cache_write_tokens=_count(item, "input_cache_write_tokens"),
                output_tokens=_count(item, "output_tokens"),
                requests=_count(item, "num_model_requests"),
                key_external_id=key_id,
                key_name=key_id,
            )
            check_row(row)
        except RecordError as exc:
            reason = str(exc)
            return line, BadRow(line, _column_of(reason, OPENAI_COLUMNS), reason), None
        return line, row, None if self.account else "openai"


OPENAI_COLUMNS = (
    "start_time",
    "end_time",
    "model",
    "project_id",
    "api_key_id",
    "user_id",
    "batch",
    "service_tier",
    "input_tokens",
    "input_cached_tokens",
    "input_cache_write_tokens",
    "output_tokens",
    "num_model_requests",
)


def _expand(data: Any, list_field: str) -> Iterator[tuple[str, Any]]:
    """Yield the rows of a line: the object itself, or each entry of a page/bucket envelope."""
    inner = data.get("data") if isinstance(data, dict) and "success" in data else data
    if isinstance(inner, dict) and isinstance(inner.get(list_field), list):
        for index, item in enumerate(inner[list_field]):
            yield f"{list_field}[{index}]", item
    elif isinstance(inner, list):
        for index, item in enumerate(inner):
            yield f"[{index}]", item
    else:
        yield "", inner


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, InvalidNumber):
        raise RecordError(f"{name}: number out of range or not finite")
    text = str(value).strip()
    if len(text) > 200:
        raise RecordError(f"{name}: longer than 200 characters")
    return text


def _count(item: dict[str, Any], name: str) -> int:
    value = item.get(name)
    if value is None or value == "":
        return 0
    if isinstance(value, (bool, InvalidNumber)):
        raise RecordError(f"{name}: must be a whole number")
    text = str(value).strip()
    if len(text) > 19 or not text.lstrip("-").isdigit():
        raise RecordError(f"{name}: must be a whole number")
    number = int(text)
    if number < 0:
        raise RecordError(f"{name}: must not be negative")
    return number


def _moment(value: Any, name: str) -> datetime:
    """Return a bucket time from unix seconds (int or digit string) or an ISO 8601 string (UTC if naive)."""
    if value is None or value == "":
        raise RecordError(f"{name}: required")
    text = str(value).strip()
    try:
        if text.isdigit() and len(text) <= 12:
            return datetime.fromtimestamp(int(text), tz=UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        return moment.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise RecordError(f"{name}: not a unix time or ISO 8601 date-time") from None


def usage_import_stream(
    *,
    organization: Organization,
    stream: BinaryIO,
    fmt: str,
    errors: ErrorReport,
    account: ProviderAccount | None = None,
    on_progress: Callable[[ImportProgress], None] | None = None,
) -> ImportProgress:
    """Import one file from a binary stream; return the counts. Bad rows go to ``errors``.

    Rollups are refreshed once at the end for every local day the file touches (also when a
    re-import changed nothing, so an interrupted earlier run is repaired). Raises ImportAborted
    for a file that cannot be read at all; rows stored before that stay (each batch commits).
    """
    parser = Parser(organization=organization, account=account, fmt=fmt)
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    lines = LineReader(text)
    items = parser.parse_csv(lines) if fmt in {ImportFormat.CSV} else None
    if fmt == ImportFormat.OPENAI:
        head = stream.peek(64)[:64] if hasattr(stream, "peek") else b""
        is_json = head.lstrip(b"\xef\xbb\xbf \r\n\t").startswith((b"{", b"["))
        items = parser.parse_jsonl(lines) if is_json else parser.parse_csv(lines)
    elif fmt in {ImportFormat.JSONL, ImportFormat.NEWAPI}:
        items = parser.parse_jsonl(lines)
    if items is None:
        raise ImportAborted(f"unknown format {fmt!r}")

    progress = ImportProgress()
    tz = organization.zoneinfo
    namespace = (
        push_namespace(organization)
        if fmt in {ImportFormat.CSV, ImportFormat.JSONL}
        else f"import:{fmt}:" + (f"account:{account.pk}" if account else f"org:{organization.pk}")
    )
    if fmt == ImportFormat.NEWAPI and account is not None:
        namespace = f"account:{account.pk}"  # the connector's namespace: see _newapi_connector
    pending: dict[str | None, list[UsageRow]] = {}
    pending_count = 0

    def flush() -> None:
        nonlocal pending_count
        for kind, rows in pending.items():
            result = usage_rows_upsert(
                organization=organization,
                rows=rows,
                account=account,
                source=RecordSource.IMPORT,
                namespace=namespace,
                refresh_rollups=False,
                provider_kind=kind,
            )
            progress.new += result.new
            progress.duplicates += result.unchanged
            progress.good += len(rows)
        pending.clear()
        pending_count = 0
        progress.bytes_read = _position(stream)
        if on_progress:
            on_progress(progress)

    try:
        for _line, result, kind in items:
            progress.rows += 1
            if isinstance(result, BadRow):
                progress.bad += 1
                errors.add(result)
                continue
            progress.days.add(local_day(result.occurred_at, tz))
            pending.setdefault(kind, []).append(result)
            pending_count += 1
            if pending_count >= BATCH_ROWS:
                flush()
        flush()
    finally:
        text.detach()
        if progress.days:
            rollup_refresh_days(organization=organization, days=progress.days)
    return progress


def _position(stream: BinaryIO) -> int:
    try:
        return stream.tell()
    except (OSError, ValueError):
        return 0


# Jobs: the UI's uploads, run by the run_import Celery task ----------------------------------------


def import_dir() -> Path:
    path = Path(settings.QB_IMPORT_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def import_errors_path(job: ImportJob) -> Path:
    return import_dir() / f"{job.public_id}.errors.csv"


def import_job_run(*, job_id: int) -> ImportJob | None:
    """Claim a queued job, import its file, keep its progress row current; return it (None if taken).

    The claim is a compare-and-set on ``status``: a redelivered task sees 0 rows updated and stops.
    """
    claimed = ImportJob.objects.filter(pk=job_id, status=ImportStatus.PENDING).update(
        status=ImportStatus.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return None
    job = ImportJob.objects.select_related("organization", "provider_account").get(pk=job_id)
    path = import_dir() / job.stored_name
    report = ErrorReport(import_errors_path(job))

    def save_progress(progress: ImportProgress) -> None:
        ImportJob.objects.filter(pk=job.pk).update(
            bytes_processed=progress.bytes_read,
            rows_processed=progress.rows,
            rows_good=progress.good,
            rows_bad=progress.bad,
            rows_new=progress.new,
            rows_duplicate=progress.duplicates,
        )

    progress = ImportProgress()
    try:
        with path.open("rb") as raw:
            progress = usage_import_stream(
                organization=job.organization,
                stream=raw,
                fmt=job.format,
                errors=report,
                account=job.provider_account,
                on_progress=save_progress,
            )
    except ImportAborted as exc:
        report.add(BadRow(1, "", str(exc)))
        _finish(job, ImportStatus.FAILED, str(exc)[:500])
    except Exception:
        logger.exception("import %s failed", job.public_id)
        _finish(
            job, ImportStatus.FAILED, "the import stopped on an internal error; rows stored so far remain"
        )
        raise
    else:
        save_progress(progress)
        ImportJob.objects.filter(pk=job.pk).update(bytes_processed=job.bytes_total)
        _finish(job, ImportStatus.DONE, "")
    finally:
        report.close()
    job.refresh_from_db()
    return job


def _finish(job: ImportJob, status: str, error: str) -> None:
    ImportJob.objects.filter(pk=job.pk).update(status=status, error=error, finished_at=timezone.now())
