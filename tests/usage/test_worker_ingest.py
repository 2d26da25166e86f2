"""End to end: a real Celery worker process ingests from the provider simulator over HTTP.

The worker is a subprocess (tests/celery_worker.py) on the test database and the test broker
(CELERY_TEST_BROKER_URL, else the file-system transport); the simulator runs in this process on a
loopback port with its clock fixed, so its own totals are the oracle. Run with DATABASE_URL set to
PostgreSQL too: the acceptance is "Redis and PostgreSQL".
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db.models import Sum

from config.celery import app as celery_app
from projects.models import ProviderAccount
from usage.models import IngestRun, RunStatus, Stream, StreamState, UsageDaily, UsageRecord
from usage.simulator.server import ProviderSimulator
from usage.simulator.world import DEFAULT_WORLD
from usage.tasks import ingest_account_usage

from ..celery_worker import broker_url, private_queue, start_worker
from .conftest import SIM_NOW, sim_account
from .test_services_ingest import assert_matches_oracle

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

# Generous: two CPU cores are shared with other jobs; these bound a hang, they time nothing.
WAIT_SECONDS = 600


class Worker:
    """A worker subprocess on ``queue``; ``options`` go to start_worker (database, broker, pool)."""

    def __init__(self, queue: str, log: Path, **options: Any) -> None:
        self.queue, self.log, self.options = queue, log, options
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = start_worker(self.queue, log_file=self.log, **self.options)

    def output(self, limit: int | None = 4000) -> str:
        """The worker's log (its last ``limit`` characters, or all of it)."""
        text = self.log.read_text() if self.log.exists() else ""
        return text[-limit:] if limit else text

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no ack, a transaction cut off mid-flight."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"worker exited while waiting for {what}:\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}:\n{self.output()}")
            time.sleep(0.2)


@contextmanager
def running_worker(tmp_path: Path, **options: Any) -> Iterator[Worker]:
    worker = Worker(private_queue(), tmp_path / "worker.log", **options)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def enqueue_ingest(worker: Worker, account: ProviderAccount, start: datetime, end: datetime) -> None:
    """Send the task as beat/"run now" would, by id and ISO bounds only (no credential in arguments)."""
    with celery_app.connection_for_write(worker.options.get("broker") or broker_url()) as conn:
        ingest_account_usage.apply_async(
            args=[account.pk, start.isoformat(), end.isoformat()], queue=worker.queue, connection=conn
        )


def finished_runs(account: ProviderAccount) -> list[IngestRun]:
    return list(
        IngestRun.objects.filter(
            provider_account=account, stream=Stream.USAGE, finished_at__isnull=False
        ).order_by("pk")
    )


def ingest_and_wait(
    worker: Worker, accounts: list[ProviderAccount], start: datetime, end: datetime
) -> list[IngestRun]:
    """Enqueue one ingest per account and return each account's newest finished run."""
    newest = IngestRun.objects.order_by("-pk").values_list("pk", flat=True).first() or 0

    def new_runs(account: ProviderAccount) -> list[IngestRun]:
        return [run for run in finished_runs(account) if run.pk > newest]

    for account in accounts:
        enqueue_ingest(worker, account, start, end)
    worker.wait_until(lambda: all(new_runs(a) for a in accounts), "the ingest runs to finish")
    runs = [new_runs(account)[-1] for account in accounts]
    for run in runs:
        assert run.status == RunStatus.SUCCESS, f"{run.error}\n{worker.output()}"
    return runs


def gateway_stat_quota(sim: ProviderSimulator, slug: str, start: datetime, end: datetime) -> int:
    """The gateway's own consumed-quota total from ``/api/log/self/stat`` (inclusive bounds)."""
    world = DEFAULT_WORLD.account(slug)
    response = httpx.get(
        f"{sim.account_url(slug)}/api/log/self/stat",
        headers={"Authorization": f"Bearer {world.credential}", "New-Api-User": str(world.newapi_user_id)},
        params={
            "type": 0,
            "start_timestamp": int(start.timestamp()),
            "end_timestamp": int(end.timestamp()) - 1,
        },
        timeout=30,
    )
    body = response.json()
    assert body["success"] is True, body
    return int(body["data"]["quota"])


def assert_stored_reseller_window_is_exact(
    sim: ProviderSimulator, account: ProviderAccount, start: datetime, end: datetime, expected_rows: int
) -> None:
    """Rows, per-day × model totals and rollups match the simulator; Σquota equals the gateway's own
    stat endpoint and Σcost = Σquota / quota_per_unit exactly: nothing lost, nothing counted twice."""
    records = UsageRecord.objects.filter(provider_account=account)
    assert records.count() == expected_rows
    assert_matches_oracle(sim, account, start, end)
    assert_rollups_match_records(account)
    sums = records.filter(status="success").aggregate(q=Sum("raw_quota"), c=Sum("cost"))
    assert sums["q"] == gateway_stat_quota(sim, "reseller", start, end)
    assert sums["c"] == Decimal(sums["q"]) / Decimal(account.quota_per_unit)


def snapshot(accounts: list[ProviderAccount]) -> list[tuple[object, ...]]:
    return list(
        UsageRecord.objects.filter(provider_account__in=accounts)
        .order_by("pk")
        .values_list("pk", "dedupe_key", "cost", "raw_quota", "input_tokens", "output_tokens", "ingested_at")
    )


def assert_rollups_match_records(account: ProviderAccount) -> None:
    raw = UsageRecord.objects.filter(provider_account=account).aggregate(
        cost=Sum("cost"), tokens=Sum("input_tokens")
    )
    rolled = UsageDaily.objects.filter(provider_account=account).aggregate(
        cost=Sum("cost"), tokens=Sum("input_tokens")
    )
    assert rolled == raw


def test_a_real_worker_ingests_from_the_simulator_to_the_cent_idempotently_and_revisions_in_place(
    tenancy, simulator, tmp_path
) -> None:
    reseller = sim_account(tenancy.org, simulator, "reseller")
    openai = sim_account(tenancy.org, simulator, "openai")
    accounts = [reseller, openai]
    # From a UTC midnight: OpenAI's billed cost comes per whole UTC day (providers.md), so a window
    # that starts mid-day would hold a whole day's bill against half a day of usage.
    start, end = SIM_NOW.replace(hour=0) - timedelta(days=2), SIM_NOW

    with running_worker(tmp_path) as worker:
        first = ingest_and_wait(worker, accounts, start, end)
        assert all(run.rows_new > 0 for run in first)
        # Per (UTC day, model): requests, tokens and cost equal the simulator's own totals, to the cent
        # and beyond (exact Decimal equality).
        for account in accounts:
            assert_matches_oracle(simulator, account, start, end)
            assert_rollups_match_records(account)
        stored_quota = UsageRecord.objects.filter(provider_account=reseller, status="success").aggregate(
            q=Sum("raw_quota")
        )["q"]
        assert stored_quota == gateway_stat_quota(simulator, "reseller", start, end) > 0
        stored_cost = UsageRecord.objects.filter(provider_account=reseller, status="success").aggregate(
            c=Sum("cost")
        )["c"]
        assert stored_cost == Decimal(stored_quota) / Decimal(reseller.quota_per_unit)

        # Running the same ingest again changes nothing: no new rows, no updates, same values.
        before = snapshot(accounts)
        again = ingest_and_wait(worker, accounts, start, end)
        assert [(run.rows_new, run.rows_updated) for run in again] == [(0, 0), (0, 0)]
        assert snapshot(accounts) == before

        # The provider restates a past hour: the worker updates those rows in place.
        revised_hour = SIM_NOW - timedelta(hours=30)
        simulator.revise("openai", revised_hour, 2)
        [revision] = ingest_and_wait(worker, [openai], start, end)
        assert revision.rows_new == 0
        assert revision.rows_updated > 0
        # Same rows (same ids, same natural keys), new values: updated in place, nothing added.
        openai_ids = set(UsageRecord.objects.filter(provider_account=openai).values_list("pk", flat=True))
        before_openai = [row for row in before if row[0] in openai_ids]
        after = snapshot([openai])
        assert [row[:2] for row in after] == [row[:2] for row in before_openai]
        assert sum(1 for old, new in zip(before_openai, after, strict=True) if old[2:6] != new[2:6]) > 0
        assert_matches_oracle(simulator, openai, start, end)
        assert_rollups_match_records(openai)


@pytest.mark.fault
def test_sigkill_mid_backfill_then_a_rerun_stores_the_same_totals_without_duplicates(
    tenancy, simulator, tmp_path
) -> None:
    account = sim_account(tenancy.org, simulator, "reseller")
    # Fourteen one-day chunks, ~33,000 log rows: long enough to be killed in the middle.
    start, end = SIM_NOW - timedelta(days=14), SIM_NOW
    expected_rows = sum(t.rows for t in simulator.expected_usage("reseller", start, end).values())
    assert expected_rows > 30_000

    with running_worker(tmp_path) as worker:
        enqueue_ingest(worker, account, start, end)

        def some_chunks_committed() -> bool:
            state = StreamState.objects.filter(provider_account=account, stream=Stream.USAGE).first()
            return bool(state and state.cursor_at and state.cursor_at >= start + timedelta(days=2))

        worker.wait_until(some_chunks_committed, "the backfill to commit two chunks")
        worker.kill()

        killed = IngestRun.objects.get(provider_account=account, stream=Stream.USAGE)
        assert killed.finished_at is None, "the backfill finished before the kill; the test proved nothing"
        partial = UsageRecord.objects.filter(provider_account=account).count()
        assert 0 < partial < expected_rows
        state = StreamState.objects.get(provider_account=account, stream=Stream.USAGE)
        # Each chunk commits with the cursor: exactly the rows before the cursor are stored, the
        # chunk in flight left nothing behind.
        assert state.cursor_at is not None
        assert partial == sum(
            t.rows for t in simulator.expected_usage("reseller", start, state.cursor_at).values()
        )
        assert not UsageRecord.objects.filter(
            provider_account=account, occurred_at__gte=state.cursor_at
        ).exists()
        assert state.lease_owner

        # Restart, and deliver the task again (an acks_late message the dead worker never acked).
        # The dead worker still holds the lease, so this copy stands aside and writes nothing...
        worker.start()
        enqueue_ingest(worker, account, start, end)
        worker.wait_until(lambda: len(finished_runs(account)) == 1, "the blocked rerun to finish")
        [blocked] = finished_runs(account)
        assert blocked.status == RunStatus.SKIPPED
        assert UsageRecord.objects.filter(provider_account=account).count() == partial
        # ...until LEASE_DURATION (15 min) passes; let that time pass instead of waiting for it.
        StreamState.objects.filter(pk=state.pk).update(lease_until=SIM_NOW.replace(year=2000))
        [rerun] = ingest_and_wait(worker, [account], start, end)

    # The run the kill cut short is closed as abandoned, not left "running" for ever.
    killed.refresh_from_db()
    assert (killed.status, killed.error_kind) == (RunStatus.FAILED, "abandoned")
    assert killed.finished_at is not None
    assert rerun.rows_new + rerun.rows_unchanged + rerun.rows_updated == expected_rows
    assert rerun.rows_new == expected_rows - partial
    assert_stored_reseller_window_is_exact(simulator, account, start, end, expected_rows)
