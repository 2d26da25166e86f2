"""`make bench`: ingest and dashboard figures at scale on PostgreSQL, each beside a baseline from the same run.

Builds N usage records (BENCH_ROWS, default 1,000,000) in a throwaway PostgreSQL database through the
project's own ingest path, then prints one table of figures with their baselines and ratios and writes
them to bench/results/<timestamp>.json. Machines here are shared and noisy: compare ratios, not seconds.
This module times ingest and the selectors; bench/served.py times every page, htmx partial and API
endpoint, the first page load's bytes, and the peak RSS of a real web process and a real worker.

Environment: BENCH_ROWS, BENCH_PG_URL (server URL without database, default
postgres://postgres@127.0.0.1:5432), BENCH_KEEP=1 keeps the database for inspection, BENCH_REUSE_DB,
BENCH_PATH_ROWS and BENCH_CONNECTOR_DAYS (see below).
"""

from __future__ import annotations

import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.figures import Figure, Figures, percentiles, timed
from bench.served import (
    bench_first_load,
    bench_requests,
    bench_web_rss,
    bench_worker_rss,
    not_measured,
    simulator_account,
)

if TYPE_CHECKING:
    from usage.simulator.process import SimulatorProcess

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432").rstrip("/")
# BENCH_REUSE_DB=<name>: time the dashboard again on a database kept by an earlier run (BENCH_KEEP=1),
# without re-ingesting (a 10M-row ingest takes about an hour on two cores).
REUSE_DB = os.environ.get("BENCH_REUSE_DB", "")
DB_NAME = REUSE_DB or f"qb_bench_{os.getpid()}"
CHUNK = 50_000
MODELS = [
    ("gpt-4o", Decimal("2.5"), Decimal("10")),
    ("gpt-4o-mini", Decimal("0.15"), Decimal("0.6")),
    ("gpt-4.1", Decimal("2"), Decimal("8")),
    ("o4-mini", Decimal("1.1"), Decimal("4.4")),
    ("claude-sonnet-4-5", Decimal("3"), Decimal("15")),
    ("claude-haiku-4-5", Decimal("1"), Decimal("5")),
    ("deepseek-chat", Decimal("0.28"), Decimal("0.42")),
    ("gemini-2.5-flash", Decimal("0.3"), Decimal("2.5")),
]
ORGS = [("bench-a", "UTC"), ("bench-b", "America/New_York"), ("bench-c", "Asia/Shanghai")]


def _setup_django() -> None:
    import psycopg

    if not REUSE_DB:
        with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    os.environ["DATABASE_URL"] = f"{PG_URL}/{DB_NAME}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("QB_VAR_DIR", tempfile.mkdtemp(prefix="qb-bench-"))
    os.environ["ALLOWED_HOSTS"] = "testserver,localhost"
    os.environ["QB_COLLECTSTATIC"] = "0"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _drop_database() -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    if os.environ.get("BENCH_KEEP") or REUSE_DB:
        print(f"kept database {DB_NAME}")
        return
    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


@dataclass
class World:
    orgs: list[Any]
    accounts: list[Any]
    keys: dict[int, list[str]]
    users: list[Any]


def _existing_world() -> World:
    """The orgs, accounts and users a kept bench database holds (BENCH_REUSE_DB)."""
    from django.contrib.auth.models import User

    from projects.models import ApiKey, Organization, ProviderAccount

    orgs = [Organization.objects.get(slug=slug) for slug, _ in ORGS]
    return World(
        orgs,
        [ProviderAccount.objects.get(organization=org, slug="openai") for org in orgs],
        {
            org.pk: list(
                ApiKey.objects.filter(organization=org).order_by("name").values_list("name", flat=True)
            )
            for org in orgs
        },
        [User.objects.get(username=f"{org.slug}-admin") for org in orgs],
    )


def _build_world() -> World:
    from django.contrib.auth.models import User

    from projects.models import ApiKey, Membership, Organization, Project, ProviderAccount
    from usage.models import ModelPrice

    orgs, accounts, users, keys = [], [], [], {}
    for slug, tz in ORGS:
        org = Organization.objects.create(name=slug.title(), slug=slug, timezone=tz)
        user = User.objects.create_user(f"{slug}-admin", password="bench")
        Membership.objects.create(user=user, organization=org, role="admin")
        projects = [
            Project.objects.create(organization=org, name=f"Project {n}", slug=f"project-{n}")
            for n in range(5)
        ]
        account = ProviderAccount(
            organization=org, kind="openai", name="OpenAI", slug="openai", base_url="http://127.0.0.1:9"
        )
        account.set_credential("bench-secret")
        account.save()
        names = [f"key-{n:02d}" for n in range(20)]
        ApiKey.objects.bulk_create(
            [
                ApiKey(
                    organization=org,
                    provider_account=account,
                    name=name,
                    external_id=name,
                    project=projects[n % 5] if n < 18 else None,
                )
                for n, name in enumerate(names)
            ]
        )
        orgs.append(org)
        accounts.append(account)
        users.append(user)
        keys[org.pk] = names
    for model, inp, out in MODELS:
        ModelPrice.objects.create(
            provider_kind="openai",
            model=model,
            effective_from=date(2020, 1, 1),
            input_per_1m=inp,
            output_per_1m=out,
            cache_read_per_1m=inp / 10,
            source="bench",
        )
    return World(orgs, accounts, keys, users)


def _rows(
    world: World, org_index: int, count: int, seed: int, end: datetime, days: int = 90
) -> Iterator[Any]:
    """Deterministic synthetic usage rows for one org: one request each, cost from quota like a gateway."""
    from usage.providers.base import UsageRow

    rng = random.Random(seed)
    org = world.orgs[org_index]
    names = world.keys[org.pk]
    span = days * 86400
    for n in range(count):
        model = MODELS[rng.randrange(len(MODELS))][0]
        prompt = rng.randrange(50, 8000)
        cached = prompt // 3 if rng.random() < 0.4 else 0
        completion = rng.randrange(10, 2000)
        quota = rng.randrange(100, 200_000)
        failed = rng.random() < 0.03
        yield UsageRow(
            occurred_at=end - timedelta(seconds=rng.randrange(span)),
            model=model,
            natural_key=f"{seed}:{n}",
            input_tokens=prompt,
            cache_read_tokens=cached,
            output_tokens=0 if failed else completion,
            cost=Decimal(0) if failed else Decimal(quota) / Decimal(500000),
            raw_quota=0 if failed else quota,
            status="error" if failed else "success",
            error_code="429" if failed else "",
            latency_ms=rng.randrange(200, 30000),
            key_external_id=names[rng.randrange(len(names))],
        )


def _chunks(iterator: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in iterator:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def bench_ingest(world: World, figures: list[Figure], end: datetime) -> float:
    """Return raw COPY's rows/s (the baseline the per-path figures are also compared with)."""
    from django.db import connection, transaction

    from usage.models import UsageRecord
    from usage.services import dedupe_key_for, rollup_rebuild, usage_rows_upsert

    per_org = ROWS // len(world.orgs)
    # Baseline: raw COPY of the same rows (already converted to column values) into a copy of the
    # usage table with the same primary key and unique natural-key index.
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE bench_copy (LIKE usage_usagerecord INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING INDEXES INCLUDING CONSTRAINTS)"
        )
    copy_seconds = 0.0
    ingest_seconds = 0.0
    new = 0
    for index, org in enumerate(world.orgs):
        account = world.accounts[index]
        for chunk in _chunks(_rows(world, index, per_org, seed=index, end=end), CHUNK):
            values = [
                (
                    org.pk,
                    "connector",
                    row.occurred_at,
                    0,
                    row.model,
                    row.input_tokens,
                    row.cache_read_tokens,
                    0,
                    row.output_tokens,
                    0,
                    1,
                    int((row.cost or 0) * 10**10),
                    "USD",
                    "provider",
                    row.raw_quota,
                    row.status,
                    row.error_code,
                    row.latency_ms,
                    dedupe_key_for(f"account:{account.pk}", row.natural_key),
                    row.occurred_at,
                    account.pk,
                )
                for row in chunk
            ]
            columns = (
                "organization_id, source, occurred_at, bucket_seconds, model, input_tokens, cache_read_tokens,"
                " cache_write_tokens, output_tokens, reasoning_tokens, requests, cost, currency, cost_source,"
                " raw_quota, status, error_code, latency_ms, dedupe_key, ingested_at, provider_account_id"
            )
            start = time.perf_counter()
            with (
                connection.cursor() as cursor,
                cursor.connection.cursor().copy(f"COPY bench_copy ({columns}) FROM STDIN") as copy,
            ):
                for value in values:
                    copy.write_row(value)
            copy_seconds += time.perf_counter() - start
            seconds, result = timed(
                lambda chunk=chunk, org=org, account=account: usage_rows_upsert(
                    organization=org, rows=chunk, account=account, refresh_rollups=False
                )
            )
            ingest_seconds += seconds
            new += result.new
        print(f"  ingested {org.slug}: {new:,} rows so far", flush=True)
    stored = UsageRecord.objects.count()
    assert stored == new, (stored, new)
    figures.append(
        Figure(
            "bulk ingest (usage_rows_upsert)",
            stored / ingest_seconds,
            "rows/s",
            "raw COPY",
            stored / copy_seconds,
            "≥ 0.4×",
        )
    )

    # Re-ingest the first org's rows: nothing may change.
    first = world.orgs[0]
    seconds_first = 0.0
    seconds_again = 0.0
    unchanged = 0
    for chunk in _chunks(_rows(world, 0, per_org, seed=0, end=end), CHUNK):
        t, result = timed(
            lambda chunk=chunk: usage_rows_upsert(
                organization=first, rows=chunk, account=world.accounts[0], refresh_rollups=False
            )
        )
        seconds_again += t
        unchanged += result.unchanged
        assert result.new == 0 and result.updated == 0, result
    seconds_first = ingest_seconds / len(world.orgs)
    figures.append(
        Figure(
            "re-ingest of stored rows",
            seconds_again,
            "s",
            "first ingest",
            seconds_first,
            "≤ 0.5×",
            {"unchanged": unchanged},
        )
    )

    # Rollups: full rebuild, then upkeep for 100k new rows landing in the last two days.
    rebuild_seconds = 0.0
    for org in world.orgs:
        t, _ = timed(lambda org=org: rollup_rebuild(organization=org))
        rebuild_seconds += t
    fresh = list(_rows(world, 1, 100_000, seed=99, end=end, days=2))
    # 100k rows already in those two days, so the new rows land among existing ones.
    usage_rows_upsert(
        organization=world.orgs[1], rows=fresh, account=world.accounts[1], refresh_rollups=False
    )
    rollup_rebuild(organization=world.orgs[1], since=(end - timedelta(days=3)).date())
    fresh2 = [row.__class__(**{**row.__dict__, "natural_key": "b" + row.natural_key}) for row in fresh]

    # Upkeep = what an ingest spends on rollups: the same 100k new rows ingested without rollups (then
    # rolled back) and with them, back to back on the same state; the difference is the upkeep.
    # (The COPY writer adds new rows to the rollups inside its INSERT, so timing a separate
    # recompute would not measure the path ingestion takes.)
    def without_rollups() -> None:
        with transaction.atomic():
            usage_rows_upsert(
                organization=world.orgs[1], rows=fresh2, account=world.accounts[1], refresh_rollups=False
            )
            transaction.set_rollback(True)

    upkeep = []
    for _ in range(2):
        t_without, _ = timed(without_rollups)
        with transaction.atomic():
            t_with, result = timed(
                lambda: usage_rows_upsert(
                    organization=world.orgs[1], rows=fresh2, account=world.accounts[1], refresh_rollups=True
                )
            )
            transaction.set_rollback(True)
        upkeep.append((max(0.0, t_with - t_without), t_without, t_with))
    # The same ingest once more (rolled back), each rollup-writing statement explained first.
    plans: list[Any] = []
    with transaction.atomic(), connection.execute_wrapper(partial(_explain_rollup_writes, plans)):
        usage_rows_upsert(
            organization=world.orgs[1], rows=fresh2, account=world.accounts[1], refresh_rollups=True
        )
        transaction.set_rollback(True)
    # Keep the rows (the dashboards read them) and the lower of two tries (less of the machine's noise).
    usage_rows_upsert(
        organization=world.orgs[1], rows=fresh2, account=world.accounts[1], refresh_rollups=True
    )
    best = min(upkeep)
    figures.append(
        Figure(
            "rollup upkeep per 100k new rows",
            best[0],
            "s",
            "full rebuild",
            rebuild_seconds,
            "≤ 1.5 s",
            {
                "ingest_100k_without_s": best[1],
                "with_s": best[2],
                "tries_s": [u[0] for u in upkeep],
                "days": len(result.days),
            },
        )
    )
    rollup_ms = _rollup_time_ms(plans)
    figures.append(
        Figure(
            "rollup upkeep per 100k new rows (EXPLAIN ANALYZE)",
            (rollup_ms["daily"] + rollup_ms["hourly"]) / 1000,
            "s",
            "the INSERT statements",
            rollup_ms["statements"] / 1000,
            "≤ 1.5 s",
            {
                "daily_s": rollup_ms["daily"] / 1000,
                "hourly_s": rollup_ms["hourly"] / 1000,
                "statements": len(plans),
            },
        )
    )
    # Autovacuum analyzes freshly loaded tables within a minute or so; do it now so the dashboard
    # figures reflect the planner's steady state, not a table it has never seen.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return stored / copy_seconds


ROLLUP_TABLES = {"usage_usagedaily": "daily", "usage_usagehourly": "hourly"}


def _explain_rollup_writes(
    plans: list[Any], execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    """Execute wrapper: before the COPY writer's INSERT that also adds to the rollups (usage/services.py
    ``_write_postgres`` with ``rollup_delta``), run it under EXPLAIN ANALYZE in a savepoint rolled back
    (same data, same state) and keep the plan; then run the statement itself."""
    if sql.startswith("WITH w AS (INSERT INTO usage_usagerecord") and "INSERT INTO usage_usagedaily" in sql:
        cursor = context["cursor"]
        cursor.execute("SAVEPOINT bench_explain")
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
        plans.append(json.loads(plan) if isinstance(plan, str) else plan)
        cursor.execute("ROLLBACK TO SAVEPOINT bench_explain")
    return execute(sql, params, many, context)


def _rollup_time_ms(plans: list[Any]) -> dict[str, float]:
    """Sum, over the explained statements, the milliseconds of the nodes that write each rollup table
    (ModifyTable on it, which includes the grouping of the inserted rows beneath it, plus the
    constraint triggers its rows fire) and the statements' whole execution time.

    The rollup CTEs are not read by the statement's SELECT, so PostgreSQL runs them after it, from
    the inserted rows already materialised: their time does not include the records' own INSERT.
    """
    totals = {"daily": 0.0, "hourly": 0.0, "statements": 0.0}

    def walk(node: dict[str, Any]) -> None:
        table = ROLLUP_TABLES.get(node.get("Relation Name", ""))
        if node["Node Type"] == "ModifyTable" and table:
            totals[table] += node["Actual Total Time"] * node["Actual Loops"]
        for child in node.get("Plans", []):
            walk(child)

    for (explained,) in plans:
        walk(explained["Plan"])
        totals["statements"] += explained["Execution Time"]
        for trigger in explained.get("Triggers", []):
            table = ROLLUP_TABLES.get(trigger.get("Relation", ""))
            if table:
                totals[table] += trigger["Time"]
    return totals


PATH_ROWS = int(os.environ.get("BENCH_PATH_ROWS", "30000"))
CONNECTOR_DAYS = int(os.environ.get("BENCH_CONNECTOR_DAYS", "3"))


def _push_record(n: int, end: datetime) -> dict[str, Any]:
    rng = random.Random(n)
    model = MODELS[n % len(MODELS)][0]
    return {
        "request_id": f"push-{n}",
        "occurred_at": (end - timedelta(seconds=rng.randrange(30 * 86400))).isoformat(),
        "model": model,
        "input_tokens": rng.randrange(50, 8000),
        "output_tokens": rng.randrange(10, 2000),
        "cost": str(Decimal(rng.randrange(1, 10**8)) / Decimal(10**10)),
        "currency": "USD",
        "api_key": f"key-{n % 20:02d}",
    }


def bench_paths(
    world: World, figures: list[Figure], end: datetime, copy_rows_per_s: float, sim: SimulatorProcess
) -> None:
    """Rows/s end to end through each way usage arrives, against the run's raw COPY rate.

    - push API: POST /api/v1/usage with an ingest token, 1,000-record batches, served in-process by
      Django's test client (auth, JSON, validation, upsert, rollups; no socket);
    - file import: a CSV of the documented columns through ``usage_import_stream`` (the UI's task);
    - connector: the New API connector reading the provider simulator over loopback HTTP
      (``usage_ingest_window``: HTTP, JSON, parsing, upsert, rollups, cursor), the simulator in a
      child process.
    Each path writes into organization bench-c, on top of the rows already stored. BENCH_PATH_ROWS
    (default 30,000) rows each for push and import; the connector reads BENCH_CONNECTOR_DAYS days.
    """
    import csv
    import io

    from django.test import Client

    from projects.services import ingest_token_create
    from usage.imports import ErrorReport, usage_import_stream
    from usage.ingest import usage_ingest_window
    from usage.models import UsageRecord

    org = world.orgs[2]

    def landed(start_count: int) -> int:
        return UsageRecord.objects.filter(organization=org).count() - start_count

    # Push API.
    _, secret = ingest_token_create(organization=org, name="bench push", created_by=None)
    client = Client()
    headers = {"Authorization": f"Bearer {secret}"}
    before = UsageRecord.objects.filter(organization=org).count()
    records = [_push_record(n, end) for n in range(PATH_ROWS)]
    bodies = [json.dumps({"records": records[i : i + 1000]}) for i in range(0, PATH_ROWS, 1000)]

    def push_all() -> None:
        for body in bodies:
            response = client.post("/api/v1/usage", body, content_type="application/json", headers=headers)
            assert response.status_code == 200, (response.status_code, response.content[:300])

    seconds, _ = timed(push_all)
    assert landed(before) == PATH_ROWS, landed(before)
    figures.append(
        Figure(
            "ingest via push API",
            PATH_ROWS / seconds,
            "rows/s",
            "raw COPY",
            copy_rows_per_s,
            "≥ 0.4×",
            {"rows": PATH_ROWS, "batch": 1000},
        )
    )

    # File import.
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["request_id", "occurred_at", "model", "input_tokens", "output_tokens", "cost", "currency"]
    )
    for n in range(PATH_ROWS):
        r = _push_record(n + 10**7, end)
        writer.writerow(
            [
                f"file-{n}",
                r["occurred_at"],
                r["model"],
                r["input_tokens"],
                r["output_tokens"],
                r["cost"],
                "USD",
            ]
        )
    data = io.BufferedReader(io.BytesIO(buffer.getvalue().encode()))  # type: ignore[arg-type]
    before = UsageRecord.objects.filter(organization=org).count()
    with tempfile.TemporaryDirectory() as tmp:
        errors = ErrorReport(Path(tmp) / "errors.csv")
        seconds, progress = timed(
            lambda: usage_import_stream(organization=org, stream=data, fmt="csv", errors=errors)
        )
        errors.close()
    assert landed(before) == PATH_ROWS, (landed(before), progress)
    figures.append(
        Figure(
            "ingest via file import (CSV)",
            PATH_ROWS / seconds,
            "rows/s",
            "raw COPY",
            copy_rows_per_s,
            "≥ 0.4×",
            {"rows": PATH_ROWS},
        )
    )

    # Connector over HTTP from the simulator: the busiest gateway account's last CONNECTOR_DAYS days.
    # The provider in its own process, as a real one is remote; the connector runs here, as in a worker.
    account = simulator_account(org, sim)
    before = UsageRecord.objects.filter(organization=org).count()
    start = sim.now - timedelta(days=CONNECTOR_DAYS)
    seconds, run = timed(lambda: usage_ingest_window(account=account, start=start, end=sim.now))
    got = landed(before)
    assert str(run.status) == "success", (run.status, run.error)
    figures.append(
        Figure(
            "ingest via connector (New API over HTTP)",
            got / seconds,
            "rows/s",
            "raw COPY",
            copy_rows_per_s,
            "≥ 0.4×",
            {"rows": got, "base_url": sim.base_url},
        )
    )


class RawBaselines:
    """The same aggregate over raw rows, two ways: PostgreSQL's naive GROUP BY on usage_usagerecord, and
    DuckDB scanning an in-memory copy of the rows. Each is the p50 of 5 runs, per query shape asked for.

    The window is [start, end] in local days, widened by a day each side in UTC (as a rollup read of
    local days would be); the copy holds every organization's rows, as the table does.
    """

    PG_GROUPS = {
        "day": "(occurred_at AT TIME ZONE %(tz)s)::date",
        "model": "model",
        "project": "project_id",
        "key": "api_key_id",
        "currency": "currency",
    }
    DUCK_GROUPS = {**PG_GROUPS, "day": "CAST(timezone($tz, occurred_at) AS DATE)"}
    COLUMNS = {
        "organization_id": "BIGINT",
        "project_id": "BIGINT",
        "api_key_id": "BIGINT",
        "occurred_at": "TIMESTAMPTZ",
        "model": "VARCHAR",
        "currency": "VARCHAR",
        "input_tokens": "BIGINT",
        "output_tokens": "BIGINT",
        "cost": "BIGINT",
        "requests": "BIGINT",
    }

    def __init__(self, org: Any, start: date, end: date) -> None:
        import duckdb
        from django.db import connection

        self.params: dict[str, Any] = {
            "tz": org.timezone,
            "org": org.pk,
            "start": datetime.combine(start, datetime.min.time(), tzinfo=UTC) - timedelta(days=1),
            "end": datetime.combine(end, datetime.min.time(), tzinfo=UTC) + timedelta(days=2),
        }
        self._p50s: dict[tuple[Any, ...], tuple[float, float]] = {}
        columns = ", ".join(self.COLUMNS)
        types = ", ".join(f"'{name}': '{kind}'" for name, kind in self.COLUMNS.items())
        with tempfile.NamedTemporaryFile(suffix=".csv") as dump:
            with (
                connection.cursor() as cursor,
                cursor.connection.cursor().copy(
                    f"COPY (SELECT {columns} FROM usage_usagerecord) TO STDOUT WITH CSV"
                ) as copy,
            ):
                for data in copy:
                    dump.write(data)
            dump.flush()
            self.duck = duckdb.connect()
            self.duck.execute(
                f"CREATE TABLE raw AS SELECT * FROM read_csv('{dump.name}', columns={{{types}}})"
            )

    def sql(
        self, groups: tuple[str, ...], sums: tuple[str, ...], project_id: int | None, *, duck: bool
    ) -> tuple[str, dict[str, Any]]:
        """Return the query and its parameters (``%(name)s`` for PostgreSQL, ``$name`` for DuckDB)."""
        exprs = self.DUCK_GROUPS if duck else self.PG_GROUPS
        mark = "${}" if duck else "%({})s"
        where = f"organization_id = {mark.format('org')} AND occurred_at >= {mark.format('start')}"
        where += f" AND occurred_at < {mark.format('end')}"
        params = dict(self.params)
        if project_id is not None:
            where += f" AND project_id = {mark.format('project')}"
            params["project"] = project_id
        select = ", ".join([*(exprs[g] for g in groups), *(f"SUM({s})" for s in sums)])
        group_by = ", ".join(str(n + 1) for n in range(len(groups)))
        sql = (
            f"SELECT {select} FROM {'raw' if duck else 'usage_usagerecord'} WHERE {where} GROUP BY {group_by}"
        )
        if duck:  # DuckDB refuses parameters the query does not use
            params = {name: value for name, value in params.items() if f"${name}" in sql}
        return sql, params

    def p50s(
        self,
        groups: tuple[str, ...] = ("day", "model"),
        sums: tuple[str, ...] = ("cost", "requests"),
        project_id: int | None = None,
    ) -> tuple[float, float]:
        """Return (PostgreSQL p50, DuckDB p50) in seconds for one query shape; measured once per run."""
        from django.db import connection

        shape = (groups, sums, project_id)
        if shape not in self._p50s:
            pg_sql, pg_params = self.sql(groups, sums, project_id, duck=False)
            duck_sql, duck_params = self.sql(groups, sums, project_id, duck=True)
            naive, duck = [], []
            for _ in range(5):
                with connection.cursor() as cursor:
                    naive.append(timed(lambda: (cursor.execute(pg_sql, pg_params), cursor.fetchall()))[0])
                duck.append(timed(lambda: self.duck.execute(duck_sql, duck_params).fetchall())[0])
            self._p50s[shape] = (statistics.median(naive), statistics.median(duck))
        return self._p50s[shape]


def bench_dashboard(world: World, figures: list[Figure], runs: int = 15) -> RawBaselines:
    """Time the dashboard's selectors; return the raw-row baselines (bench/served.py times the pages)."""
    from usage import selectors

    org = world.orgs[1]
    today = datetime.now(UTC).date()
    flt = selectors.UsageFilter(start=today - timedelta(days=29), end=today)

    # Baseline 1: the naive GROUP BY over raw rows. Baseline 2: DuckDB scanning the same raw rows in memory.
    baselines = RawBaselines(org, flt.start, flt.end)
    naive_p50, duck_p50 = baselines.p50s()

    panels: dict[str, Callable[[], Any]] = {
        "spend by day x model": lambda: selectors.spend_by_day(
            organization=org, flt=flt, currency="USD", group_by="model"
        ),
        "top models": lambda: selectors.top_models(organization=org, flt=flt, currency="USD"),
        "top projects": lambda: selectors.top_projects(organization=org, flt=flt, currency="USD"),
        "totals": lambda: selectors.spend_totals(organization=org, flt=flt),
    }
    for name, fn in panels.items():
        samples = [timed(fn)[0] for _ in range(runs)]
        p50, p95 = percentiles(samples)
        figures.append(
            Figure(
                f"panel {name} p95",
                p95 * 1000,
                "ms",
                "naive GROUP BY raw p50",
                naive_p50 * 1000,
                "≤ 100 ms; ≥ 15× faster",
                {"p50_ms": p50 * 1000, "x_faster_than_duckdb_p50": duck_p50 / p50},
                ratio_kind="baseline/value",
            )
        )

    return baselines


def _print(figures: list[Figure]) -> None:
    print()
    print(f"{'figure':44} {'value':>14} {'baseline':>36} {'ratio':>8}  target")
    for f in figures:
        base = f"{f.baseline:,.1f} ({f.baseline_name})" if f.baseline is not None else ""
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else ""
        print(f"{f.name:44} {f.value:>10,.1f} {f.unit:<3} {base:>36} {ratio:>8}  {f.target}")
        if f.extra:
            print(
                f"{'':44} {json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in f.extra.items()})}"
            )


def main() -> None:
    if REUSE_DB:
        print(f"Quotaboard bench: dashboard figures only, on the kept database {DB_NAME}")
    else:
        print(f"Quotaboard bench: {ROWS:,} usage records in throwaway PostgreSQL database {DB_NAME}")
    _setup_django()
    figures: list[Figure] = Figures()
    try:
        now = datetime.now(UTC)
        if REUSE_DB:
            from usage.models import UsageRecord

            world = _existing_world()
            print(f"  {UsageRecord.objects.count():,} usage records stored")
        else:
            world = _build_world()
            copy_rate = bench_ingest(world, figures, now)
        from usage.simulator.process import SimulatorProcess

        # The provider in its own process, as a real one is remote: the connector path and the worker read it.
        with SimulatorProcess(seed=7, now=now.replace(minute=0, second=0, microsecond=0)) as sim:
            if not REUSE_DB:
                bench_paths(world, figures, now, copy_rate, sim)
            baselines = bench_dashboard(world, figures)
            bench_requests(world, figures, baselines)
            bench_first_load(world, figures)
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            figures.append(Figure("peak RSS of the bench process", rss_mb, "MB"))
            # Real processes, measured from outside; a failure is reported and the run goes on.
            try:
                bench_web_rss(world, figures)
            except Exception as exc:
                not_measured(figures, "peak RSS of the web process", exc)
            try:
                bench_worker_rss(figures, sim, CONNECTOR_DAYS)
            except Exception as exc:
                not_measured(figures, "peak RSS of the worker process", exc)
    finally:
        _drop_database()
    _print(figures)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{'reuse-' + DB_NAME if REUSE_DB else ROWS}.json"
    out.write_text(
        json.dumps(
            {
                "rows": DB_NAME if REUSE_DB else ROWS,
                "figures": [f.__dict__ | {"ratio": f.ratio} for f in figures],
            },
            indent=2,
            default=str,
        )
    )
    print(f"\nwritten {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
