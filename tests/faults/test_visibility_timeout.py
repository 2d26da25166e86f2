"""F8 visibility_timeout_redelivery: Redis hands a stalled ingest's message to another worker.

A private redis-server is the broker, with a visibility timeout of 10 s. Worker A takes an ingest
whose first provider call stalls 25 s (the simulator's ``stall`` fault). Once the message has been
unacked for longer than the visibility timeout, worker B starts: as any Redis consumer does at poll
start (and every 10 s after), it restores the unacked message to the queue and receives the copy.
The copy finds the stream's lease held by A and ends "skipped"; A finishes; the rows land once.

Found by this test: lease owners were the task id, which the redelivered copy shares, so the copy
took the lease, fetched and wrote alongside A, and A's run then failed "lease lost". Owners are now
unique per execution (usage/tasks.py).

The settings check (tests/test_celery_settings.py, quotaboard.E001) keeps production's visibility
timeout above every task's longest run, so this is what happens only when that guard is ignored or a
task outlives it (e.g. a stall longer than the provider timeout allows).
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest

from config.celery import app as celery_app
from usage.models import IngestRun, RunStatus, Stream, UsageRecord
from usage.tasks import ingest_account_usage

from ..celery_worker import private_queue
from ..usage.conftest import SIM_NOW, sim_account
from ..usage.test_services_ingest import assert_matches_oracle
from ..usage.test_worker_ingest import Worker
from .conftest import private_redis_server

pytestmark = [pytest.mark.fault, pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

VISIBILITY_TIMEOUT = 10
STALL_SECONDS = 25


def test_a_copy_redelivered_by_redis_mid_stall_is_skipped_by_the_lease_and_the_rows_land_once(
    tenancy, simulator, tmp_path
) -> None:
    account = sim_account(tenancy.org, simulator, "reseller")
    start, end = SIM_NOW - timedelta(hours=12), SIM_NOW
    simulator.inject("reseller", "stall", times=1, seconds=STALL_SECONDS)
    env = {
        "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
        # Longer than the stall: A's call waits it out instead of timing out and retrying.
        "QB_PROVIDER_TIMEOUT": str(STALL_SECONDS * 3),
    }

    with private_redis_server(appendonly=False) as redis:
        queue = private_queue()
        first = Worker(queue, tmp_path / "worker-a.log", broker=redis.url, env=env)
        second = Worker(queue, tmp_path / "worker-b.log", broker=redis.url, env=env)
        first.start()
        try:
            with celery_app.connection_for_write(redis.url) as conn:
                ingest_account_usage.apply_async(
                    args=[account.pk, start.isoformat(), end.isoformat()], queue=queue, connection=conn
                )
            runs = IngestRun.objects.filter(provider_account=account, stream=Stream.USAGE)
            first.wait_until(lambda: runs.filter(status=RunStatus.RUNNING).exists(), "A to start the run")
            delivered_at = time.monotonic()
            # The message has sat in Redis' unacked set since A received it.
            assert redis.cli("hlen", "unacked") == "1"
            time.sleep(max(0.0, VISIBILITY_TIMEOUT + 1 - (time.monotonic() - delivered_at)))
            assert runs.get().status == RunStatus.RUNNING  # A is still stalled

            second.start()
            # Short waits: a copy that runs instead of skipping would take the lease and finish fast.
            second.wait_until(
                lambda: runs.exclude(status=RunStatus.RUNNING).exists(), "B to receive the copy", timeout=120
            )
            first.wait_until(lambda: runs.filter(status=RunStatus.SUCCESS).exists(), "A to finish")
            # Both copies acked: nothing is left for Redis to hand out again.
            second.wait_until(lambda: redis.cli("hlen", "unacked") == "0", "both copies to be acked")
        finally:
            first.stop()
            second.stop()
        assert redis.cli("llen", queue) == "0"

    statuses = sorted(str(run.status) for run in runs)
    assert statuses == ["skipped", "success"], (statuses, first.output(), second.output())
    skipped = runs.get(status=RunStatus.SKIPPED)
    assert skipped.error == "skipped: another run of this stream is in progress"
    # B got the very message A holds (same task id), not a second send.
    received = [
        re.findall(r"Task usage\.tasks\.ingest_account_usage\[([0-9a-f-]+)\] received", w.output(limit=None))
        for w in (first, second)
    ]
    assert len(received[0]) == 1 and received[0] == received[1], received
    success = runs.get(status=RunStatus.SUCCESS)
    # Once: every stored row came from A's run, and the totals equal the simulator's own.
    stored = UsageRecord.objects.filter(provider_account=account).count()
    assert stored == success.rows_new > 0
    assert_matches_oracle(simulator, account, start, end)
