"""F1 kill9_worker_mid_backfill: a 100k-row backfill survives a SIGKILLed pool child, then a SIGKILLed worker.

A real prefork worker (one pool child) on a private redis-server (visibility timeout 10 s) backfills
45 days of a New API gateway's logs (~101,000 rows) from the simulator over HTTP.

1. Once about half the window is committed, the pool child running the ingest gets SIGKILL. The
   worker's main process sees the child die (WorkerLostError), closes the run "crashed" with
   Celery's reason and frees the lease. The app runs with ``task_reject_on_worker_lost`` off, so
   Celery acks the message: nothing comes back from the broker. The retry is the next beat: the
   test sends ``dispatch_usage_ingests`` as beat does, and it queues the account's ingest again
   (from the cursor minus the overlap).
2. Once that second run has committed part of the rest, the worker's main process gets SIGKILL
   (its pool child dies with it: Celery sets PDEATHSIG). Nobody acks: the message stays in Redis'
   ``unacked`` set. The test re-sends nothing; it starts a second worker once the message has been
   unacked longer than the visibility timeout, and that worker's consumer restores the message at
   poll start (kombu sweeps at poll start, then about every 100 s). The copy finds the lease held
   by a dead process of the same task on this host, takes it over at once, closes the dead run as
   abandoned and finishes.

Then: rows = the simulator's rows, each written once (Σ rows_new over the runs = rows stored, none
updated), no duplicate natural key; Σquota = the simulator's oracle = ``/api/log/self/stat``; Σcost
= Σquota ÷ quota_per_unit exactly; per-day × model totals and rollups exact; cursor at the end of
the last run's window; lease free; run log crashed → abandoned → success; the broker empty.
"""

from __future__ import annotations

import os
import re
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db.models import Count, Sum

from config.celery import app as celery_app
from projects.models import ProviderAccount
from usage.ingest import ErrorKind
from usage.models import IngestRun, RunStatus, Stream, StreamState, UsageRecord
from usage.simulator.server import ProviderSimulator
from usage.tasks import dispatch_usage_ingests

from ..usage.conftest import SIM_NOW, sim_account
from ..usage.test_worker_ingest import Worker, assert_stored_reseller_window_is_exact, enqueue_ingest
from .conftest import PrivateRedis, private_redis_server, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

VISIBILITY_TIMEOUT = 10
DAYS = 45
# The broker is private to this test, so the workers may take the default queue, where the
# dispatcher sends its ingests (and a successful ingest its alert evaluation).
QUEUE = "celery"
WAIT = 120  # bounds a hang; times nothing


def parent_pid(pid: int) -> int:
    """The parent of ``pid`` from /proc (the field after the command name in parentheses)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (killed, not yet reaped) counts as dead."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def lease_holder(account: ProviderAccount) -> tuple[str, int]:
    """The task id and process id of the execution holding the stream's lease (``<task>:<pid>@<host>``)."""
    owner = StreamState.objects.get(provider_account=account, stream=Stream.USAGE).lease_owner
    match = re.fullmatch(r"([0-9a-f-]+):(\d+)@\w+", owner)
    assert match, f"unexpected lease owner {owner!r}"
    return match[1], int(match[2])


def cursor_past(account: ProviderAccount, days: float) -> bool:
    state = StreamState.objects.filter(provider_account=account, stream=Stream.USAGE).first()
    return bool(state and state.cursor_at and state.cursor_at >= SIM_NOW - timedelta(days=DAYS - days))


def assert_stored_exactly_up_to_the_cursor(sim: ProviderSimulator, account: ProviderAccount) -> int:
    """Each chunk commits with the cursor: the rows before it are all stored, none after it."""
    state = StreamState.objects.get(provider_account=account, stream=Stream.USAGE)
    assert state.cursor_at is not None
    stored = UsageRecord.objects.filter(provider_account=account).count()
    start = SIM_NOW - timedelta(days=DAYS)
    assert stored == sum(t.rows for t in sim.expected_usage("reseller", start, state.cursor_at).values())
    assert not UsageRecord.objects.filter(provider_account=account, occurred_at__gte=state.cursor_at).exists()
    return stored


def received_task_ids(worker: Worker) -> list[str]:
    return re.findall(
        r"Task usage\.tasks\.ingest_account_usage\[([0-9a-f-]+)\] received", worker.output(limit=None)
    )


def broker_empty(redis: PrivateRedis) -> bool:
    return redis.cli("hlen", "unacked") == "0" and redis.cli("llen", QUEUE) in {"0", ""}


def test_a_backfill_survives_a_killed_pool_child_and_a_killed_worker_and_lands_every_row_once(
    tenancy, simulator, tmp_path
) -> None:
    account = sim_account(tenancy.org, simulator, "reseller")
    start, end = SIM_NOW - timedelta(days=DAYS), SIM_NOW
    expected_rows = sum(t.rows for t in simulator.expected_usage("reseller", start, end).values())
    assert expected_rows > 100_000
    runs = IngestRun.objects.filter(provider_account=account, stream=Stream.USAGE).order_by("pk")
    env = {"CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT)}

    with private_redis_server(appendonly=False) as redis:
        first = Worker(QUEUE, tmp_path / "worker-a.log", broker=redis.url, pool="prefork", env=env)
        second = Worker(QUEUE, tmp_path / "worker-b.log", broker=redis.url, pool="prefork", env=env)
        first.start()
        try:
            # --- 1. SIGKILL the pool child at about half of the backfill ------------------------
            enqueue_ingest(first, account, start, end)
            first.wait_until(lambda: cursor_past(account, DAYS / 2), "half the backfill to commit", WAIT)
            backfill_task, child = lease_holder(account)
            assert first.process is not None
            assert child != first.process.pid and parent_pid(child) == first.process.pid
            os.kill(child, signal.SIGKILL)
            first.wait_until(lambda: runs.filter(finished_at__isnull=False).exists(), "the run closed", WAIT)
            stored_at_crash = assert_stored_exactly_up_to_the_cursor(simulator, account)
            # The main process freed the lease at once: the next run need not wait LEASE_DURATION.
            assert StreamState.objects.get(provider_account=account, stream=Stream.USAGE).lease_owner == ""
            assert 0 < stored_at_crash < expected_rows
            # reject_on_worker_lost is off: Celery acks the dead child's message, nothing is requeued.
            first.wait_until(lambda: broker_empty(redis), "the dead child's message to be acked", WAIT)
            time.sleep(1)
            assert runs.count() == 1
            assert first.process.poll() is None, "the worker's main process died with its child"

            # The next beat: the dispatcher finds the account due and queues its ingest again.
            with celery_app.connection_for_write(redis.url) as conn:
                dispatch_usage_ingests.apply_async(queue=QUEUE, connection=conn)

            # --- 2. SIGKILL the worker's main process mid-way through that second run ------------
            first.wait_until(
                lambda: runs.count() == 2 and cursor_past(account, DAYS * 3 / 4),
                "the re-run to commit part of the rest",
                WAIT,
            )
            retry_task, retry_child = lease_holder(account)
            assert retry_task != backfill_task and parent_pid(retry_child) == first.process.pid
            first.kill()
            wait_for(lambda: not alive(retry_child), "the pool child to die with the main process", 30)
            stored_at_kill = assert_stored_exactly_up_to_the_cursor(simulator, account)
            assert stored_at_crash < stored_at_kill < expected_rows
            # Nobody closed the run or freed the lease; the message sits unacked in Redis. (Were
            # the machine so slow that worker A lived past its own periodic sweep, ~100 s after it
            # started, A would already have put the message back in the queue: the same message.)
            unacked, queued = int(redis.cli("hlen", "unacked") or 0), int(redis.cli("llen", QUEUE) or 0)
            assert (unacked, queued) in {(1, 0), (0, 1)}, (unacked, queued)
            if unacked:
                _tag, delivered = redis.cli("zrange", "unacked_index", "0", "-1", "withscores").split()
                # Start the new worker once the visibility timeout has passed since the delivery:
                # its consumer hands the unacked message back at poll start. The test sends nothing.
                time.sleep(max(0.0, float(delivered) + VISIBILITY_TIMEOUT + 0.5 - time.time()))
            second.start()
            second.wait_until(
                lambda: runs.filter(status=RunStatus.SUCCESS).exists(), "the redelivered run to finish", WAIT
            )
            # Drain what the success queued (an alert evaluation); a stray ingest copy would run too.
            second.wait_until(lambda: broker_empty(redis), "the broker to drain", WAIT)
            time.sleep(1)
            assert broker_empty(redis)
        finally:
            first.stop()
            second.stop()

    # The redelivered message is the one the killed worker held: same task id, received by both.
    assert received_task_ids(first) == [backfill_task, retry_task]
    assert received_task_ids(second) == [retry_task], second.output()
    # Run log: the child's death recorded by the main process, the killed worker's run closed as
    # abandoned by the copy that took over its lease, then the success.
    crashed, abandoned, success = runs
    assert (crashed.status, crashed.error_kind) == (RunStatus.FAILED, ErrorKind.CRASHED)
    assert "signal 9 (SIGKILL)" in crashed.error, crashed.error
    assert (abandoned.status, abandoned.error_kind) == (RunStatus.FAILED, ErrorKind.ABANDONED)
    assert success.status == RunStatus.SUCCESS, success.error
    assert all(run.finished_at is not None for run in (crashed, abandoned, success))
    # The re-runs start from the cursor minus the 6-hour overlap, not from the beginning.
    assert crashed.window_start == start
    assert abandoned.window_start is not None and abandoned.window_start > start + timedelta(
        days=DAYS / 2 - 1
    )
    # Each row was written once: the overlaps were re-read as unchanged, nothing updated.
    assert sum(run.rows_new for run in runs) == expected_rows
    assert [run.rows_updated for run in runs] == [0, 0, 0]
    assert success.rows_new == expected_rows - stored_at_kill
    # Nothing lost, nothing twice, the money exact (and equal to the gateway's own stat endpoint).
    assert_stored_reseller_window_is_exact(simulator, account, start, end, expected_rows)
    duplicates = (
        UsageRecord.objects.filter(provider_account=account)
        .values("dedupe_key")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
    )
    assert not duplicates.exists()
    quota = UsageRecord.objects.filter(provider_account=account, status="success").aggregate(
        q=Sum("raw_quota")
    )
    assert quota["q"] == simulator.expected_quota("reseller", start, end)
    # The cursor is at the end of the last run's window; the lease is free.
    state = StreamState.objects.get(provider_account=account, stream=Stream.USAGE)
    assert success.window_end is not None and success.window_end >= end
    assert state.cursor_at == success.window_end
    assert (state.lease_owner, state.lease_until) == ("", None)
