"""Import a generated usage CSV (default 1M rows, 1 % malformed) and report time and peak memory.

Not part of the test run. Usage (from the repository root):
    .venv/bin/python -m bench.import_memory [--rows 1000000] [--bad-every 100]   # throwaway SQLite
    .venv/bin/python -m bench.import_memory --pg        # throwaway PostgreSQL database qb_hapi_bench

The file has our documented import columns (see README "Importing usage files"). Each import runs as
``manage.py import_usage`` in its own child process (the same service, ``usage_import_stream``, that
the UI's Celery task uses), and the child's own ru_maxrss (from ``os.wait4``) is its peak RSS.
Afterwards the script checks that every good row landed (count and exact cost sum), that every bad
row is in the error report under its line number, and that importing the same file again adds
nothing. Exits non-zero on any mismatch or when the peak passes --max-rss-mb (default 300).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "qb_hapi_bench"

BAD_VALUES = [
    ("input_tokens", "NaN"),
    ("input_tokens", "9" * 5000),
    ("output_tokens", "1e400"),
    ("input_tokens", "-7"),
    ("occurred_at", "2026-02-30T10:00:00+00:00"),
    ("occurred_at", "2026-10-15T10:00:00"),
    ("cost", "Infinity"),
    ("cost", "not money"),
]
COLUMNS = [
    "request_id",
    "occurred_at",
    "model",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cost",
    "currency",
    "api_key",
]
MODELS = ["gpt-4o", "gpt-4.1-mini", "claude-sonnet-4", "deepseek-chat"]


def generate(path: Path, rows: int, bad_every: int) -> tuple[set[int], Decimal, int]:
    """Write the CSV; return the bad line numbers, the exact cost sum of good rows and their count."""
    rng = random.Random(7)
    bad_lines: set[int] = set()
    total = Decimal(0)
    good = 0
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        for n in range(rows):
            line = n + 2
            day = 1 + n % 28
            cost = Decimal(rng.randrange(1, 10**8)).scaleb(-10)
            row = {
                "request_id": f"bench-{n}",
                "occurred_at": f"2026-10-{day:02d}T{n % 24:02d}:{n % 60:02d}:00+00:00",
                "model": MODELS[n % len(MODELS)],
                "input_tokens": str(rng.randrange(100, 50_000)),
                "cached_input_tokens": "0",
                "output_tokens": str(rng.randrange(1, 5_000)),
                "cost": format(cost, "f"),
                "currency": "USD",
                "api_key": f"key-{n % 50}",
            }
            if n % bad_every == bad_every // 2:
                column, value = BAD_VALUES[(n // bad_every) % len(BAD_VALUES)]
                row[column] = value
                bad_lines.add(line)
            else:
                total += cost
                good += 1
            writer.writerow([row[c] for c in COLUMNS])
    return bad_lines, total, good


def run_child(command: list[str]) -> tuple[float, int, str]:
    """Run one child process; return (seconds, its own peak RSS in KiB, its stdout)."""
    started = time.monotonic()
    child = subprocess.Popen(command, env=os.environ, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    out = child.stdout.read()
    _pid, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{' '.join(command[1:4])} failed with exit code {child.returncode}")
    return time.monotonic() - started, usage.ru_maxrss, out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bad-every", type=int, default=100)
    parser.add_argument("--pg", action="store_true", help="Use a throwaway PostgreSQL database.")
    parser.add_argument("--max-rss-mb", type=float, default=300.0)
    args = parser.parse_args()
    var_dir = Path(tempfile.mkdtemp(prefix="qb-import-bench-"))
    os.environ["QB_VAR_DIR"] = str(var_dir)
    if args.pg:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB}")
            conn.execute(f"CREATE DATABASE {PG_BENCH_DB}")
        os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{PG_BENCH_DB}"
    else:
        os.environ["DATABASE_URL"] = f"sqlite:///{var_dir / 'bench.sqlite3'}"
    try:
        ok = bench(args, var_dir)
    finally:
        from django.db import connections

        connections.close_all()
        shutil.rmtree(var_dir, ignore_errors=True)
        if args.pg:
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB}")
    sys.exit(0 if ok else 1)


def bench(args: argparse.Namespace, var_dir: Path) -> bool:
    """Generate, import twice, check; return True when everything matched."""
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], check=True, env=os.environ)
    db = "PostgreSQL" if args.pg else "SQLite"

    import django

    django.setup()
    from django.db.models import Sum

    from projects.models import Organization
    from usage.models import UsageDaily, UsageRecord

    org = Organization.objects.create(slug="bench", name="Bench")

    path = var_dir / "bench-usage.csv"
    started = time.monotonic()
    bad_lines, good_cost, good_rows = generate(path, args.rows, args.bad_every)
    print(
        f"generated {args.rows:,} rows ({len(bad_lines):,} bad), {path.stat().st_size / 1e6:.1f} MB "
        f"in {time.monotonic() - started:.1f} s; database: {db}",
        flush=True,
    )

    def totals() -> tuple[int, Decimal | None]:
        stored = UsageRecord.objects.filter(organization=org).count()
        cost = UsageDaily.objects.filter(organization=org).aggregate(total=Sum("cost"))["total"]
        return stored, cost

    errors = var_dir / "bench-errors.csv"
    peaks: list[float] = []
    after: list[tuple[int, Decimal | None]] = []
    for attempt in ("first import", "re-import"):
        command = [*manage, "import_usage", str(path), "--org", "bench", "--errors", str(errors), "--quiet"]
        elapsed, peak_kb, out = run_child(command)
        peaks.append(peak_kb / 1024)
        after.append(totals())
        print(
            f"{attempt}: {elapsed:.1f} s, {args.rows / elapsed:,.0f} rows/s, peak RSS of the import "
            f"process {peak_kb / 1024:.0f} MB\n    {out.strip()}",
            flush=True,
        )

    (stored, stored_cost), (stored_again, cost_again) = after
    with errors.open(newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        reported = {int(row[0]) for row in reader}
    print(
        f"stored rows {stored:,} (expected {good_rows:,}); rollup cost {stored_cost} (expected {good_cost})"
    )
    print(
        f"bad rows reported by line: {len(reported):,} (expected {len(bad_lines):,}), "
        f"same lines: {reported == bad_lines}"
    )
    print(
        f"after re-import: {stored_again:,} rows, rollup cost {cost_again} (unchanged: {after[0] == after[1]})"
    )
    print(f"peak RSS: {max(peaks):.0f} MB (limit {args.max_rss_mb:.0f} MB)")
    ok = (
        stored == good_rows
        and stored_cost == good_cost
        and reported == bad_lines
        and after[0] == after[1]
        and max(peaks) <= args.max_rss_mb
    )
    print("OK" if ok else "MISMATCH")
    return ok


if __name__ == "__main__":
    main()
