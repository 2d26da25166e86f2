"""Peak memory and time of the month exports (usage CSV and FOCUS CSV) over 1M UsageDaily rows.

Usage (from the repository root):
    .venv/bin/python -m bench.export_memory              # throwaway SQLite file in a temp dir
    .venv/bin/python -m bench.export_memory --pg         # throwaway PostgreSQL database qb_finance_bench
    .venv/bin/python -m bench.export_memory --rows 200000

Each phase runs in its own process so its peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``)
is its own: one process generates the rows, one streams the usage CSV export view to /dev/null, one
streams the FOCUS export view, then (for contrast) one builds the same usage CSV rows as a list
first, as a non-streaming export would. Exits non-zero when a streamed export passes --max-rss-mb.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "qb_finance_bench"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def setup_django(database_url: str, var_dir: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = database_url
    os.environ["QB_VAR_DIR"] = var_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def generate(rows: int) -> dict[str, object]:
    """Migrate, create one organization with 50 projects, 500 keys, 3 accounts, then insert ``rows`` rollup rows."""
    from datetime import date, timedelta

    from django.core.management import call_command
    from django.db import connection, transaction

    from projects.models import ApiKey, Membership, Organization, Project, ProviderAccount, Role
    from usage.models import UsageDaily

    call_command("migrate", verbosity=0)
    from django.contrib.auth.models import User

    org = Organization.objects.create(name="Bench", slug="bench", timezone="America/New_York")
    user = User.objects.create_user("bench-finance", password="x")
    Membership.objects.create(organization=org, user=user, role=Role.FINANCE)
    projects = Project.objects.bulk_create(
        [Project(organization=org, name=f"=Project {n}", slug=f"p{n}") for n in range(50)]
    )
    accounts = [
        ProviderAccount.objects.create(
            organization=org, kind=kind, name=f"{kind} account", slug=kind, base_url="http://127.0.0.1:9"
        )
        for kind in ("newapi", "openai", "anthropic")
    ]
    keys = ApiKey.objects.bulk_create(
        [
            ApiKey(
                organization=org,
                project=projects[n % 50],
                provider_account=accounts[n % 3],
                name=f"key-{n}",
                external_id=f"key-{n}",
            )
            for n in range(500)
        ]
    )
    fields = [
        "organization_id", "day", "project_id", "api_key_id", "provider_account_id", "model", "status",
        "error_code", "currency", "input_tokens", "cache_read_tokens", "cache_write_tokens",
        "output_tokens", "reasoning_tokens", "requests", "cost", "unpriced_requests",
    ]  # fmt: skip
    table = UsageDaily._meta.db_table
    placeholders = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {table} ({', '.join(fields)}) VALUES ({placeholders})"
    first = date(2026, 10, 1)
    models = [f"model-{m}" for m in range(80)]
    started = time.monotonic()
    batch: list[tuple[object, ...]] = []
    written = 0
    with transaction.atomic(), connection.cursor() as cursor:
        # Distinct (day, key, model) triples: 31 days x 500 keys x 80 models = 1.24M >= 1M.
        for n in range(rows):
            day = first + timedelta(days=n % 31)
            key = keys[(n // 31) % 500]
            model = models[(n // (31 * 500)) % 80]
            batch.append(
                (org.pk, day, key.project_id, key.pk, key.provider_account_id, model, "success", "", "USD",
                 1000 + n % 7, 100, 0, 200, 0, 3, 12_345_678_900 + n, 0)
            )  # fmt: skip
            if len(batch) == 10_000:
                cursor.executemany(sql, batch)
                written += len(batch)
                batch = []
        if batch:
            cursor.executemany(sql, batch)
            written += len(batch)
    return {"rows": written, "seconds": round(time.monotonic() - started, 1)}


def stream(mode: str) -> dict[str, object]:
    """Stream the month_export_csv (mode "stream") or month_export_focus (mode "focus") view for
    October 2026 into /dev/null, or build the usage rows as a list first (mode "list"); report peak
    RSS, lines and bytes."""
    from django.contrib.auth.models import User
    from django.test import RequestFactory

    from billing.exports import USAGE_COLUMNS, month_usage_rows
    from billing.review import month_window
    from billing.views_review import month_export_csv, month_export_focus
    from projects.models import Organization
    from usage.exports import csv_lines

    user = User.objects.get(username="bench-finance")
    org = Organization.objects.get(slug="bench")
    baseline = peak_rss_mb()
    started = time.monotonic()
    written = lines = 0
    with open(os.devnull, "w") as sink:
        if mode in ("stream", "focus"):
            view = month_export_csv if mode == "stream" else month_export_focus
            request = RequestFactory().get(f"/o/bench/review/2026-10/{mode}.csv")
            request.user = user
            response = view(request, org_slug="bench", month="2026-10")
            for chunk in response.streaming_content:
                text = chunk.decode() if isinstance(chunk, bytes) else chunk
                written += len(text)
                lines += 1
                sink.write(text)
        else:
            from datetime import date

            window = month_window(organization=org, month=date(2026, 10, 1), today=date(2026, 12, 1))
            materialised = list(month_usage_rows(organization=org, window=window))
            for line in csv_lines(USAGE_COLUMNS, materialised):
                written += len(line)
                lines += 1
                sink.write(line)
    return {
        "mode": mode,
        "csv_lines": lines,
        "bytes": written,
        "seconds": round(time.monotonic() - started, 1),
        "peak_rss_before_mb": round(baseline, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def child(args: argparse.Namespace) -> None:
    setup_django(args.database_url, args.var_dir)
    result = generate(args.rows) if args.phase == "generate" else stream(args.phase)
    print(json.dumps(result))


def run_phase(phase: str, database_url: str, var_dir: str, rows: int) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--database-url", database_url, "--var-dir", var_dir,
         "--rows", str(rows)],
        check=True, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pg", action="store_true", help="Use a throwaway PostgreSQL database.")
    parser.add_argument("--skip-list", action="store_true", help="Skip the materialised comparison.")
    parser.add_argument("--max-rss-mb", type=float, default=300.0, help="Limit for the streamed exports.")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--var-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="qb-export-bench-") as var_dir:
        if args.pg:
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB}")
                conn.execute(f"CREATE DATABASE {PG_BENCH_DB}")
            database_url = f"postgres://postgres@127.0.0.1:5432/{PG_BENCH_DB}"
        else:
            database_url = f"sqlite:///{var_dir}/bench.sqlite3"
        try:
            print("generate:", run_phase("generate", database_url, var_dir, args.rows), flush=True)
            streamed = [run_phase(mode, database_url, var_dir, args.rows) for mode in ("stream", "focus")]
            for result in streamed:
                print(f"{result['mode']}:  ", result, flush=True)
            if not args.skip_list:
                print("list:    ", run_phase("list", database_url, var_dir, args.rows), flush=True)
            peak = max(float(str(result["peak_rss_mb"])) for result in streamed)
            print(f"streamed exports: peak RSS {peak:.0f} MB (limit {args.max_rss_mb:.0f} MB)")
            if peak > args.max_rss_mb:
                sys.exit(1)
        finally:
            if args.pg:
                import psycopg

                with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB}")


if __name__ == "__main__":
    main()
