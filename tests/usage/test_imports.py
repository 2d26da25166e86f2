"""Streaming file import: our CSV/JSONL columns, New API log exports, OpenAI usage exports, bad input."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projects.models import ImportFormat
from tests import factories
from tests.conftest import Tenancy
from usage import imports
from usage.imports import ErrorReport, ImportAborted, ImportProgress, usage_import_stream
from usage.models import CostSource, ModelPrice, RecordSource, UsageDaily, UsageRecord

HEADER = "request_id,occurred_at,model,input_tokens,output_tokens,cost,currency,project"


def run(
    t: Tenancy, data: bytes, fmt: str, tmp_path: Path, **kwargs: Any
) -> tuple[ImportProgress, list[list[str]]]:
    report_path = tmp_path / f"errors-{len(list(tmp_path.iterdir()))}.csv"
    report = ErrorReport(report_path)
    try:
        progress = usage_import_stream(
            organization=t.org, stream=io.BytesIO(data), fmt=fmt, errors=report, **kwargs
        )
    finally:
        report.close()
    with report_path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["line", "column", "reason"]
    return progress, rows[1:]


def good_line(n: int, cost: str = "0.25") -> str:
    return f"r{n},2026-10-15T10:00:00+00:00,gpt-4o,100,50,{cost},USD,chat"


def test_a_csv_with_every_kind_of_bad_row_lands_the_good_rows_and_reports_each_bad_one(
    tenancy: Tenancy, tmp_path: Path
) -> None:
    huge = "x" * (csv.field_size_limit() + 10)
    lines = [
        HEADER,
        good_line(1),  # line 2
        "r2,2026-10-15T10:00:00+00:00,gpt-4o,NaN,50,0.25,USD,chat",  # 3
        "r3,2026-10-15T10:00:00+00:00,gpt-4o,1e400,50,0.25,USD,chat",  # 4
        f"r4,2026-10-15T10:00:00+00:00,gpt-4o,{'9' * 5000},50,0.25,USD,chat",  # 5
        "r5,2026-10-15T10:00:00+00:00,gpt-4o,-1,50,0.25,USD,chat",  # 6
        "r6,2026-02-30T10:00:00+00:00,gpt-4o,1,50,0.25,USD,chat",  # 7
        "r7,2026-10-15T10:00:00+00:00,gpt-4o,1,50",  # 8: missing cells
        "r8,2026-10-15T10:00:00+00:00,gpt-4o,1,50,0.25,USD,chat,extra",  # 9: extra cell
        f'r9,2026-10-15T10:00:00+00:00,"{huge}",1,50,0.25,USD,chat',  # 10: over the csv field limit
        '"r10","2026-10-15T10:00:00+00:00","gpt-4o, ""quoted""",1,50,"0.5",USD,chat',  # 11: quoted, good
        "r11,2026-10-15T10:00:00+00:00,gpt-4o,1,50,Infinity,USD,chat",  # 12
        "r12,2026-10-15T10:00:00+00:00,gpt-4o,1,50,0.25,USD,nope",  # 13: unknown project
        good_line(13, cost="1.125"),  # 14
    ]
    data = ("\ufeff" + "\r\n".join(lines) + "\r\n").encode()

    progress, errors = run(tenancy, data, ImportFormat.CSV, tmp_path)

    assert [int(e[0]) for e in errors] == [3, 4, 5, 6, 7, 8, 9, 10, 12, 13]
    by_line = {int(e[0]): e for e in errors}
    assert by_line[3][1] == "input_tokens"
    assert by_line[7][1] == "occurred_at"
    assert by_line[8][2] == "row has 5 fields, the header has 8"
    assert by_line[10][2].startswith("malformed CSV: field larger than field limit")
    assert by_line[12][1] == "cost"
    assert progress.good == 3 and progress.bad == 10
    assert set(UsageRecord.objects.values_list("model", flat=True)) == {"gpt-4o", 'gpt-4o, "quoted"'}
    total = UsageDaily.objects.aggregate(total=Sum("cost"))["total"]
    assert total == Decimal("0.25") + Decimal("0.5") + Decimal("1.125")


def test_importing_the_same_file_twice_adds_nothing(tenancy: Tenancy, tmp_path: Path) -> None:
    data = "\n".join([HEADER, good_line(1), good_line(2, "0.1")]).encode()

    first, _ = run(tenancy, data, ImportFormat.CSV, tmp_path)
    second, _ = run(tenancy, data, ImportFormat.CSV, tmp_path)

    assert (first.new, first.duplicates) == (2, 0)
    assert (second.new, second.duplicates) == (0, 2)
    assert UsageRecord.objects.count() == 2
    assert UsageDaily.objects.aggregate(total=Sum("cost"))["total"] == Decimal("0.35")
    assert set(UsageRecord.objects.values_list("source", flat=True)) == {RecordSource.IMPORT}


def test_a_header_without_the_required_columns_aborts_the_import(tenancy: Tenancy, tmp_path: Path) -> None:
    with pytest.raises(ImportAborted, match="missing column\\(s\\): occurred_at"):
        run(tenancy, b"request_id,model\nr1,gpt-4o\n", ImportFormat.CSV, tmp_path)
    with pytest.raises(ImportAborted, match="unknown column\\(s\\): colour"):
        run(tenancy, (HEADER + ",colour\n").encode(), ImportFormat.CSV, tmp_path)


def test_jsonl_rows_are_reported_by_line_and_good_ones_land(tenancy: Tenancy, tmp_path: Path) -> None:
    good = {"request_id": "j1", "occurred_at": "2026-10-15T10:00:00Z", "model": "m", "cost": "0.5"}
    lines = [
        json.dumps(good),
        "",
        '{"request_id": "j2", "occurred_at": "2026-10-15T10:00:00Z", "model": "m", "cost": NaN}',
        "{not json",
        "[1, 2]",
        json.dumps({**good, "request_id": "j3", "colour": "red"}),
        json.dumps({**good, "request_id": "j4", "cost": 0.25}),
    ]
    progress, errors = run(tenancy, "\n".join(lines).encode(), ImportFormat.JSONL, tmp_path)

    assert [(int(e[0]), e[1]) for e in errors] == [(3, "cost"), (4, ""), (5, ""), (6, "colour")]
    assert progress.good == 2
    assert UsageRecord.objects.get(dedupe_key__isnull=False, cost=Decimal("0.25"))


@pytest.mark.parametrize(
    ("head", "name", "expected"),
    [
        (b'{"request_id": "r", "occurred_at": "2026-10-15T00:00:00Z", "model": "m", "status": "success"}',
         "usage.jsonl", ImportFormat.JSONL),
        (b'{"request_id": "r", "occurred_at": "2026-10-15T00:00:00Z", "model": "m"}', "u.txt", ImportFormat.JSONL),
        (b'{"success": true, "data": {"items": []}}', "logs.json", ImportFormat.NEWAPI),
        (b'{"id": 1, "model_name": "gpt-4o", "prompt_tokens": 3}', "logs.jsonl", ImportFormat.NEWAPI),
        (b"start_time,end_time,model,num_model_requests\n", "openai.csv", ImportFormat.OPENAI),
        (HEADER.encode() + b"\n", "usage.csv", ImportFormat.CSV),
    ],
)  # fmt: skip
def test_the_format_is_guessed_from_keys_not_values(head: bytes, name: str, expected: str) -> None:
    assert imports.detect_format(head, name) == expected


def test_a_line_longer_than_the_cap_is_skipped_and_reported(
    tenancy: Tenancy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imports, "MAX_LINE_CHARS", 100)
    data = "\n".join([HEADER, "r0," + "x" * 500, good_line(1)]).encode()
    progress, errors = run(tenancy, data, ImportFormat.CSV, tmp_path)
    assert errors == [["2", "", "line longer than 100 characters"]]
    assert progress.good == 1


def test_invalid_utf8_is_reported_not_stored(tenancy: Tenancy, tmp_path: Path) -> None:
    data = HEADER.encode() + b"\nr1,2026-10-15T10:00:00Z,gpt\xff4o,1,1,0.1,USD,chat\n" + good_line(2).encode()
    progress, errors = run(tenancy, data, ImportFormat.CSV, tmp_path)
    assert [(e[0], e[1]) for e in errors] == [("2", "model")]
    assert progress.good == 1


def test_error_report_cells_that_look_like_formulas_are_neutralised(tenancy: Tenancy, tmp_path: Path) -> None:
    with pytest.raises(ImportAborted):
        run(tenancy, (HEADER + ",=HYPERLINK(1)\n").encode(), ImportFormat.CSV, tmp_path)
    report_path = tmp_path / "report.csv"
    report = ErrorReport(report_path)
    report.add(imports.BadRow(7, "=cmd", "@SUM(1)"))
    report.add(imports.BadRow(8, "-2+3", "\t=1"))
    report.close()
    rows = list(csv.reader(report_path.open(newline="")))
    assert rows[1:] == [["7", "'=cmd", "'@SUM(1)"], ["8", "'-2+3", "'\t=1"]]


def test_a_new_api_log_export_imports_with_the_gateways_quota_as_cost(
    tenancy: Tenancy, tmp_path: Path
) -> None:
    account = factories.make_account(tenancy.org, kind="newapi", slug="gw")
    item = {
        "id": 517,
        "created_at": 1767225600,
        "type": 2,
        "token_name": "prod-key",
        "model_name": "gpt-4o",
        "quota": 3740,
        "prompt_tokens": 1200,
        "completion_tokens": 480,
        "use_time": 3,
        "other": '{"cache_tokens":256,"cache_ratio":0.5}',
    }
    topup = {**item, "type": 1, "quota": 0}
    page = {"success": True, "message": "", "data": {"page": 1, "items": [{**item, "id": 1, "quota": 2000}]}}
    lines = [json.dumps(item), json.dumps(topup), json.dumps(page), json.dumps({**item, "prompt_tokens": -3})]

    progress, errors = run(tenancy, "\n".join(lines).encode(), ImportFormat.NEWAPI, tmp_path, account=account)
    again, _ = run(tenancy, "\n".join(lines).encode(), ImportFormat.NEWAPI, tmp_path, account=account)

    assert [int(e[0]) for e in errors] == [4]
    assert progress.good == 2 and again.new == 0
    record = UsageRecord.objects.get(raw_quota=3740)
    assert record.cost == Decimal(3740) / 500_000
    assert (record.input_tokens, record.cache_read_tokens, record.output_tokens) == (1200, 256, 480)
    assert record.provider_account == account and record.latency_ms == 3000


def test_an_openai_usage_export_csv_is_priced_from_the_openai_price_list(
    tenancy: Tenancy, tmp_path: Path
) -> None:
    ModelPrice.objects.create(
        provider_kind="openai",
        model="gpt-4.1-mini",
        effective_from="2026-01-01",
        input_per_1m=Decimal("0.4"),
        output_per_1m=Decimal("1.6"),
        cache_read_per_1m=Decimal("0.1"),
    )
    data = (
        b"start_time,end_time,input_tokens,input_cached_tokens,output_tokens,num_model_requests,model,project_id,api_key_id\n"
        b"1767225600,1767312000,120000,40000,9000,57,gpt-4.1-mini,proj_abc,key_xyz\n"
        b"1767225600,1767312000,-5,0,9000,57,gpt-4.1-mini,proj_abc,key_xyz\n"
        b"2026-01-02T00:00:00Z,,100,0,10,1,gpt-4.1-mini,,\n"
    )

    progress, errors = run(tenancy, data, ImportFormat.OPENAI, tmp_path)

    assert [(e[0], e[1]) for e in errors] == [("3", "input_tokens")]
    bucket = UsageRecord.objects.get(api_key__external_id="key_xyz")
    expected = (80000 * Decimal("0.4") + 40000 * Decimal("0.1") + 9000 * Decimal("1.6")) / 1_000_000
    assert bucket.cost == expected and bucket.cost_source == CostSource.PRICE
    assert (bucket.requests, bucket.bucket_seconds) == (57, 86400)
    assert progress.good == 2


def test_the_import_usage_command_reports_counts_and_writes_the_error_report(
    tenancy: Tenancy, tmp_path: Path
) -> None:
    path = tmp_path / "usage.csv"
    path.write_text("\n".join([HEADER, good_line(1), "r2,bad-date,gpt-4o,1,1,0.1,USD,chat"]))
    errors = tmp_path / "errors.csv"
    out = io.StringIO()

    call_command("import_usage", str(path), "--org", "acme", "--errors", str(errors), "--quiet", stdout=out)

    assert "2 rows" in out.getvalue() and "1 good" in out.getvalue() and "1 bad" in out.getvalue()
    assert [row[:2] for row in csv.reader(errors.open())][1:] == [["3", "occurred_at"]]


# B2: generated rows. Each is good or bad by construction; every bad one must be reported by its line,
# every good one stored once, and a second import must add nothing.
BAD_VALUES = {
    "input_tokens": ["NaN", "Infinity", "1e400", "9" * 5000, "-1", "1.5", "0x10"],
    "occurred_at": ["2026-02-30T00:00:00Z", "2026-10-15T10:00:00", "yesterday", "0001-01-01T00:00:00+05:00"],
    "cost": ["NaN", "-Infinity", "1e400", "-0.5", "1,5", "123456789012.1"],
    "model": ["", "a\x00b", "x" * 201],
}

good_rows = st.fixed_dictionaries(
    {
        "input_tokens": st.integers(0, 10**12).map(str),
        "output_tokens": st.integers(0, 10**9).map(str),
        "cost": st.decimals(min_value=0, max_value=10**6, places=10, allow_nan=False).map(
            lambda d: format(d, "f")
        ),
        "model": st.text(
            st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=30
        ).filter(str.strip),
    }
)
bad_rows = st.sampled_from(sorted(BAD_VALUES)).flatmap(
    lambda column: st.tuples(st.just(column), st.sampled_from(BAD_VALUES[column]))
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    rows=st.lists(st.one_of(good_rows, bad_rows), min_size=1, max_size=25),
    fmt=st.sampled_from([ImportFormat.CSV, ImportFormat.JSONL]),
    crlf=st.booleans(),
    bom=st.booleans(),
)
def test_generated_rows_are_each_stored_once_or_reported_by_line(
    tenancy: Tenancy, tmp_path: Path, rows: list[Any], fmt: str, crlf: bool, bom: bool
) -> None:
    UsageRecord.objects.all().delete()
    records, expected_bad = [], []
    for n, row in enumerate(rows):
        record = {
            "request_id": f"h{n}",
            "occurred_at": "2026-10-15T10:00:00+02:00",
            "model": "m",
            "input_tokens": "10",
            "output_tokens": "5",
            "cost": "0.1",
        }
        if isinstance(row, dict):
            record.update(row)
        else:
            column, value = row
            record[column] = value
            expected_bad.append(n)
        records.append(record)
    newline = "\r\n" if crlf else "\n"
    if fmt == ImportFormat.CSV:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(records[0]), lineterminator=newline)
        writer.writeheader()
        writer.writerows(records)
        text, first_line = buffer.getvalue(), 2
    else:
        text, first_line = newline.join(json.dumps(r) for r in records) + newline, 1
    data = (("\ufeff" if bom else "") + text).encode()

    first, errors = run(tenancy, data, fmt, tmp_path)
    second, _ = run(tenancy, data, fmt, tmp_path)

    assert [int(e[0]) for e in errors] == [first_line + n for n in expected_bad]
    assert first.good == len(rows) - len(expected_bad) == UsageRecord.objects.count()
    assert second.new == 0
    assert sorted(UsageRecord.objects.values_list("dedupe_key", flat=True).distinct()) == sorted(
        UsageRecord.objects.values_list("dedupe_key", flat=True)
    )
