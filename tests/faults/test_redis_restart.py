"""F3 redis_restart_queued: the broker dies with 50 ingests queued, with and without an append-only file.

A private redis-server (tests/faults/conftest.py) is the broker of two real workers: one runs the
usage dispatcher (what beat sends every minute), the other ingests. The dispatcher books each due
source's next run in the database and queues 50 ingests; ``redis-cli shutdown nosave`` kills the
broker before any is consumed; the broker comes back on the same port and directory.

- AOF on: the queue survives; every source is ingested once from the surviving messages, and the
  next dispatcher run finds nothing due (no second copy).
- AOF off: the queue is lost. Nothing runs until the sources are due again; then the dispatcher —
  which reads what is due from the database, not from the broker — queues each once more, and
  each is ingested once. The loss costs at most one interval (QB_USAGE_INTERVAL_MINUTES), which
  this test lets pass by moving ``next_run_at`` back, as F1 moves the lease.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db.models import Count, Sum

from config.celery import app as celery_app
from projects.models import ProviderAccount
from usage.models import IngestRun, RunStatus, Stream, StreamState, UsageRecord
from usage.simulator.world import DEFAULT_WORLD
from usage.tasks import dispatch_usage_ingests

from .. import factories
from ..celery_worker import private_queue
from ..usage.conftest import SIM_NOW
from ..usage.test_worker_ingest import Worker
from .conftest import PrivateRedis, private_redis_server

pytestmark = [pytest.mark.fault, pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

SOURCES = 50
SLUG = "legacy-gateway"  # a One API gateway: ~110 log rows per 6-hour overlap window, so 50 stay quick
INGEST_QUEUE = "celery"  # where the dispatcher's ingests go (the private broker serves only this test)


def dispatch(redis: PrivateRedis, queue: str) -> None:
    """Send the dispatcher as beat does."""
    with celery_app.connection_for_write(redis.url) as conn:
        dispatch_usage_ingests.apply_async(queue=queue, connection=conn)


def dispatcher_results(worker: Worker) -> list[str]:
    return [
        line.rsplit(": ", 1)[-1]
        for line in worker.output(limit=None).splitlines()
        if "dispatch_usage_ingests" in line and "succeeded" in line
    ]


def runs_by_account(accounts: list[ProviderAccount]) -> dict[int, list[tuple[str, int]]]:
    runs: dict[int, list[tuple[str, int]]] = {a.pk: [] for a in accounts}
    for run in IngestRun.objects.filter(provider_account__in=accounts, stream=Stream.USAGE).order_by("pk"):
        assert run.provider_account_id is not None
        runs[run.provider_account_id].append((str(run.status), run.rows_new))
    return runs


@pytest.mark.parametrize("appendonly", [False, True], ids=["aof-off", "aof-on"])
def test_queued_ingests_survive_or_are_rescheduled_and_each_source_is_ingested_once(
    appendonly, tenancy, simulator, tmp_path
) -> None:
    world = DEFAULT_WORLD.account(SLUG)
    accounts = [
        factories.make_account(
            tenancy.org,
            world.kind,
            slug=f"source-{n:02}",
            name=f"Source {n:02}",
            base_url=simulator.account_url(SLUG),
            quota_per_unit=world.quota_per_unit,
            currency=world.currency,
            credential=world.credential,
        )
        for n in range(SOURCES)
    ]
    # Data complete through the simulator's "now": each ingest re-reads the 6-hour overlap only.
    for account in accounts:
        StreamState.objects.create(provider_account=account, stream=Stream.USAGE, cursor_at=SIM_NOW)
    oracle = simulator.expected_usage(SLUG, SIM_NOW - timedelta(hours=6), SIM_NOW + timedelta(days=7))
    rows_per_source = sum(t.rows for t in oracle.values())
    cost_per_source = sum(t.cost for t in oracle.values())
    assert rows_per_source > 50

    with private_redis_server(appendonly=appendonly) as redis:
        dispatcher = Worker(private_queue(), tmp_path / "dispatcher.log", broker=redis.url)
        ingester = Worker(INGEST_QUEUE, tmp_path / "ingester.log", broker=redis.url)
        dispatcher.start()
        try:
            dispatch(redis, dispatcher.queue)
            dispatcher.wait_until(lambda: dispatcher_results(dispatcher) == ["50"], "50 ingests queued", 60)
            assert redis.cli("llen", INGEST_QUEUE) == str(SOURCES)

            redis.shutdown_nosave()
            redis.start()
            survived = int(redis.cli("llen", INGEST_QUEUE) or 0)
            assert survived == (SOURCES if appendonly else 0)

            ingester.start()
            if not appendonly:
                # Lost. Nothing is due before each source's booked next run...
                dispatch(redis, dispatcher.queue)
                dispatcher.wait_until(
                    lambda: len(dispatcher_results(dispatcher)) == 2, "a dispatcher run", 60
                )
                assert dispatcher_results(dispatcher)[-1] == "0"
                assert not IngestRun.objects.filter(provider_account__in=accounts).exists()
                # ...one interval later the database says every source is due, and it is queued again.
                for state in StreamState.objects.filter(provider_account__in=accounts):
                    assert state.next_run_at is not None
                    state.next_run_at -= timedelta(minutes=5)
                    state.save(update_fields=["next_run_at"])
                dispatch(redis, dispatcher.queue)
                dispatcher.wait_until(lambda: len(dispatcher_results(dispatcher)) == 3, "the re-dispatch", 60)
                assert dispatcher_results(dispatcher)[-1] == "50"

            def all_ingested() -> bool:
                return (
                    IngestRun.objects.filter(provider_account__in=accounts, finished_at__isnull=False).count()
                    >= SOURCES
                )

            ingester.wait_until(all_ingested, "every source to be ingested", 120)
            # The next beat finds nothing due: no source is queued twice.
            dispatch(redis, dispatcher.queue)
            expected_dispatches = 2 if appendonly else 4
            dispatcher.wait_until(
                lambda: len(dispatcher_results(dispatcher)) == expected_dispatches, "a dispatcher run", 60
            )
            assert dispatcher_results(dispatcher)[-1] == "0"
            # Drain what the ingests queued (one alert evaluation each); a stray ingest copy would run too.
            ingester.wait_until(
                lambda: redis.cli("llen", INGEST_QUEUE) in {"0", ""}, "the queue to drain", 60
            )
            time.sleep(1)
        finally:
            ingester.stop()
            dispatcher.stop()

    # Each source ingested exactly once, every row once, the money exact.
    assert runs_by_account(accounts) == {a.pk: [(RunStatus.SUCCESS, rows_per_source)] for a in accounts}
    per_source = (
        UsageRecord.objects.filter(provider_account__in=accounts)
        .values("provider_account")
        .annotate(rows=Count("pk"), cost=Sum("cost"))
    )
    assert (
        sorted((p["rows"], p["cost"]) for p in per_source) == [(rows_per_source, cost_per_source)] * SOURCES
    )
