"""CSV export: streamed, RFC 4180 quoting, spreadsheet formula injection neutralised (OWASP ASVS 1.2.10)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal

from django.http import StreamingHttpResponse

# A text cell starting with one of these is read as a formula by spreadsheet applications.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\0")


def csv_cell(value: object) -> str | int:
    """Return a CSV-safe cell: numbers stay numbers (-12.5 unquoted), risky text gets a leading "'"."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    text = str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


class _Echo:
    """A file-like object whose write returns the line, so csv.writer can feed a streaming response."""

    def write(self, value: str) -> str:
        return value


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[object]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow([csv_cell(cell) for cell in header])
    for row in rows:
        yield writer.writerow([csv_cell(cell) for cell in row])


def stream_csv(
    header: Sequence[str], rows: Iterable[Sequence[object]], filename: str
) -> StreamingHttpResponse:
    """Return a streamed text/csv attachment; ``rows`` may be a generator over a QuerySet iterator."""
    response = StreamingHttpResponse(csv_lines(header, rows), content_type="text/csv; charset=utf-8")
    safe_name = "".join(ch for ch in filename if ch.isalnum() or ch in "-_.") or "export.csv"
    response["Content-Disposition"] = f'attachment; filename="{safe_name}"'
    return response
