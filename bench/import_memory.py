"""Import a generated usage CSV (default 1M rows, 1 % malformed) and report time and peak memory.

Not part of the test run. Usage:
    QB_VAR_DIR=/tmp/qb-bench .venv/bin/python bench/import_memory.py [--rows 1000000] [--bad-every 100]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/qb_bench ... (PostgreSQL; the database must exist)

The import runs as ``manage.py import_usage`` in a child process, so ru_maxrss of the child is the
import's own peak RSS. Afterwards the script checks that every good row landed (count and exact cost
sum) and that every bad row is in the error report under its line number.
"""

from __future__ import annotations

import csv
import os
import random
import resource
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("QB_VAR_DIR", "/tmp/qb-bench-import")

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


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bad-every", type=int, default=100)
    args = parser.parse_args()
    var_dir = Path(os.environ["QB_VAR_DIR"])
    var_dir.mkdir(parents=True, exist_ok=True)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], check=True, env=os.environ)

    import django

    django.setup()
    from django.db.models import Sum

    from projects.models import Organization
    from usage.models import UsageDaily, UsageRecord

    org, _ = Organization.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    UsageRecord.objects.filter(organization=org).delete()
    UsageDaily.objects.filter(organization=org).delete()

    path = var_dir / "bench-usage.csv"
    started = time.monotonic()
    bad_lines, good_cost, good_rows = generate(path, args.rows, args.bad_every)
    print(
        f"generated {args.rows:,} rows ({len(bad_lines):,} bad), {path.stat().st_size / 1e6:.1f} MB "
        f"in {time.monotonic() - started:.1f} s"
    )

    errors = var_dir / "bench-errors.csv"
    for attempt in ("first import", "re-import"):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.monotonic()
        subprocess.run(
            [*manage, "import_usage", str(path), "--org", "bench", "--errors", str(errors), "--quiet"],
            check=True,
            env=os.environ,
        )
        elapsed = time.monotonic() - started
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(
            f"{attempt}: {elapsed:.1f} s, {args.rows / elapsed:,.0f} rows/s, peak RSS of the import "
            f"process {peak_kb / 1024:.0f} MB" + ("" if peak_kb > before else " (max over both runs)")
        )

    stored = UsageRecord.objects.filter(organization=org).count()
    stored_cost = UsageDaily.objects.filter(organization=org).aggregate(total=Sum("cost"))["total"]
    with errors.open(newline="") as handle:
        reported = {int(row[0]) for row in list(csv.reader(handle))[1:]}
    print(
        f"stored rows {stored:,} (expected {good_rows:,}); rollup cost {stored_cost} (expected {good_cost})"
    )
    print(
        f"bad rows reported by line: {len(reported):,} (expected {len(bad_lines):,}), "
        f"same lines: {reported == bad_lines}"
    )
    ok = stored == good_rows and stored_cost == good_cost and reported == bad_lines
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
