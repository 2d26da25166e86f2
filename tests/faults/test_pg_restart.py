"""F2 pg_restart_mid_ingest: ``pg_ctl restart -m fast`` under a real worker and a real web process.

A private PostgreSQL cluster (tests/faults/conftest.py) is restarted while a real Celery worker is
in the middle of a ~50,000-row New API backfill from the provider simulator, and while it rebuilds
rollups. To restart at a known point, the test holds the organization's row lock (the lock every
rollup refresh takes inside the chunk transaction), waits until the worker's backend is blocked on
it, then restarts: the worker's transaction is cut off mid-write, as a real restart would do.
"""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import connections
from django.db.models import Sum

from usage.models import IngestRun, RunStatus, Stream, StreamState, UsageDaily, UsageRecord

from .. import factories
from ..usage.conftest import SIM_NOW, sim_account
from ..usage.test_services_ingest import assert_matches_oracle
from ..usage.test_worker_ingest import (
    assert_rollups_match_records,
    finished_runs,
    gateway_stat_quota,
    running_worker,
    enqueue_ingest,
)
from .conftest import PRIVATE_ALIAS, PrivatePostgres, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.celery_worker]


def hold_org_lock(server: PrivatePostgres, org_id: int) -> psycopg.Connection:
    """Take the organization's row lock (as a rollup refresh does) and keep it until the restart."""
    conn = psycopg.connect(server.admin_dsn())
    conn.execute("SELECT 1 FROM projects_organization WHERE id = %s FOR UPDATE", [org_id])
    return conn


def a_backend_waits_on_a_lock(server: PrivatePostgres) -> bool:
    with psycopg.connect(server.admin_dsn(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = %s",
            [server.dbname],
        ).fetchone()
    return bool(row and row[0])


def fresh() -> None:
    """The restart killed this process's own connection too: drop it before the next query."""
    connections[PRIVATE_ALIAS].close()


def test_a_restart_mid_backfill_is_retried_and_the_totals_are_exact(private_db, simulator, tmp_path) -> None:
    org = factories.make_org("Acme AI", slug="acme")
    account = sim_account(org, simulator, "reseller")
    start, end = SIM_NOW - timedelta(days=21), SIM_NOW
    expected_rows = sum(t.rows for t in simulator.expected_usage("reseller", start, end).values())
    assert expected_rows > 45_000

    with running_worker(tmp_path, database_url=private_db.url) as worker:
        enqueue_ingest(worker, account, start, end)

        def some_chunks_committed() -> bool:
            state = StreamState.objects.filter(provider_account=account, stream=Stream.USAGE).first()
            return bool(state and state.cursor_at and state.cursor_at >= start + timedelta(days=2))

        worker.wait_until(some_chunks_committed, "the backfill to commit two chunks")
        locker = hold_org_lock(private_db, org.pk)
        wait_for(lambda: a_backend_waits_on_a_lock(private_db), "the worker to block mid-chunk")
        restarted_at = time.monotonic()
        private_db.restart()
        locker.close()
        fresh()
        committed = UsageRecord.objects.filter(provider_account=account).count()
        assert 0 < committed < expected_rows

        worker.wait_until(
            lambda: any(run.status == RunStatus.SUCCESS for run in finished_runs(account)),
            "a retry to finish the backfill",
            timeout=180,
        )
        log = worker.output()

    runs = finished_runs(account)
    assert [run.status for run in runs] == [RunStatus.FAILED, RunStatus.SUCCESS], [
        (r.status, r.error_kind, r.error) for r in runs
    ]
    cut, retried = runs
    assert "retry" in log.lower(), log
    print("cut run:", cut.error_kind, cut.error, "retry after", time.monotonic() - restarted_at)
    assert retried.rows_new == expected_rows - committed
    records = UsageRecord.objects.filter(provider_account=account)
    assert records.count() == expected_rows
    assert_matches_oracle(simulator, account, start, end)
    assert_rollups_match_records(account)
    sums = records.filter(status="success").aggregate(q=Sum("raw_quota"), c=Sum("cost"))
    assert sums["q"] == gateway_stat_quota(simulator, "reseller", start, end)
    assert sums["c"] == Decimal(sums["q"]) / Decimal(account.quota_per_unit)
    assert UsageDaily.objects.filter(provider_account=account).exists()
    assert not IngestRun.objects.filter(provider_account=account, finished_at__isnull=True).exists()
