"""F10 poison_task: a source whose payload kills the pool child on every try.

A real prefork worker (tests/faults/poison_worker.py: the real app plus the poison) ingests three
sources: ``poison-exit`` (the child calls ``os._exit(1)`` mid-ingest), ``poison-oom`` (it grows by
256 MB and is SIGKILLed, as by the OOM killer) and a healthy gateway. With
task_reject_on_worker_lost off (the app's setting) Celery acks the dead child's message, and the
main process records the run as crashed; with it on, Celery requeues the message at once and the
same message comes back. Either way a poison source is tried at most CRASH_LIMIT times, then fails
with a reason and is paused; the healthy source keeps ingesting and the pool keeps serving.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from projects.models import AccountStatus, ProviderAccount
from usage.ingest import CRASH_LIMIT, ErrorKind
from usage.models import IngestRun, RunStatus, Stream
from usage.simulator.world import DEFAULT_WORLD

from .. import factories
from ..usage.conftest import SIM_NOW, sim_account
from ..usage.test_services_ingest import assert_matches_oracle
from ..usage.test_worker_ingest import enqueue_ingest, finished_runs, running_worker

pytestmark = [pytest.mark.fault, pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

HEALTHY = "legacy-gateway"
WAIT = 90


def poison_account(org, simulator, name: str) -> ProviderAccount:  # type: ignore[no-untyped-def]
    world = DEFAULT_WORLD.account(HEALTHY)
    return factories.make_account(
        org,
        world.kind,
        name=name,
        slug=name,
        base_url=simulator.account_url(HEALTHY),
        credential=world.credential,
    )


def kinds(account: ProviderAccount) -> list[str]:
    return [run.error_kind or str(run.status) for run in finished_runs(account)]


@pytest.mark.parametrize("reject_on_worker_lost", [False, True], ids=["reject-off", "reject-on"])
def test_a_payload_that_kills_its_child_is_tried_at_most_the_limit_then_failed_with_a_reason(
    reject_on_worker_lost, tenancy, simulator, tmp_path
) -> None:
    healthy = sim_account(tenancy.org, simulator, HEALTHY)
    poisons = [poison_account(tenancy.org, simulator, name) for name in ("poison-exit", "poison-oom")]
    start, end = SIM_NOW - timedelta(hours=6), SIM_NOW
    env = {"QB_TEST_REJECT_ON_WORKER_LOST": "1" if reject_on_worker_lost else "0"}

    with running_worker(tmp_path, pool="prefork", app="tests.faults.poison_worker", env=env) as worker:
        if reject_on_worker_lost:
            # One message per source: Celery requeues the poison messages itself after each death.
            for account in [*poisons, healthy]:
                enqueue_ingest(worker, account, start, end)
            worker.wait_until(
                lambda: all(ErrorKind.POISON in kinds(p) for p in poisons) and finished_runs(healthy),
                "the poison messages to be given up",
                WAIT,
            )
            # The run a requeued copy found "running" (its child is dead) is closed as abandoned.
            expected = [ErrorKind.ABANDONED] * CRASH_LIMIT + [ErrorKind.POISON]
        else:
            # Celery acks a dead child's message; the source is tried again at each dispatch.
            for attempt in range(1, CRASH_LIMIT + 2):
                for account in [*poisons, healthy]:
                    enqueue_ingest(worker, account, start, end)
                worker.wait_until(
                    lambda: all(len(finished_runs(a)) == attempt for a in [*poisons, healthy]),  # noqa: B023
                    f"attempt {attempt} of every source",
                    WAIT,
                )
            expected = [ErrorKind.CRASHED] * CRASH_LIMIT + [ErrorKind.POISON]
        # No redelivery loop: nothing more runs.
        settled = IngestRun.objects.count()
        time.sleep(3)
        assert IngestRun.objects.count() == settled
        # The pool still serves: a healthy ingest after all the deaths succeeds.
        enqueue_ingest(worker, healthy, start, end)
        worker.wait_until(
            lambda: len(finished_runs(healthy)) >= 2, "a healthy ingest after the crashes", WAIT
        )
        assert worker.process is not None and worker.process.poll() is None, "the worker's main process died"
        log = worker.output(limit=None)

    for poison in poisons:
        runs = finished_runs(poison)
        assert kinds(poison) == expected, [(r.error_kind, r.error) for r in runs]
        assert all(run.status == RunStatus.FAILED for run in runs)
        assert "died in each of the last 3 runs" in runs[-1].error
        poison.refresh_from_db()
        assert poison.status == AccountStatus.NEEDS_ATTENTION
        assert "worker process died" in poison.status_message
        assert not IngestRun.objects.filter(provider_account=poison, finished_at__isnull=True).exists()
    if not reject_on_worker_lost:
        exit_errors = [run.error for run in finished_runs(poisons[0])[:CRASH_LIMIT]]
        oom_errors = [run.error for run in finished_runs(poisons[1])[:CRASH_LIMIT]]
        assert all("exitcode 1" in error for error in exit_errors), exit_errors
        assert all("SIGKILL" in error for error in oom_errors), oom_errors
    assert "WorkerLostError" in log or "exited prematurely" in log
    # The healthy source ingested every time, to the simulator's totals.
    assert {run.status for run in finished_runs(healthy)} == {RunStatus.SUCCESS}
    assert_matches_oracle(simulator, healthy, start, end)
    assert not IngestRun.objects.filter(
        provider_account=healthy, stream=Stream.USAGE, finished_at__isnull=True
    ).exists()


def test_a_run_killed_at_the_hard_time_limit_is_closed_as_crashed_and_frees_the_lease(
    tenancy, simulator, tmp_path
) -> None:
    """The pool kills a child that outlives ``time_limit``; the main process closes its run at once
    (otherwise it would stay "running" and hold the lease for LEASE_DURATION)."""
    from config.celery import app as celery_app
    from usage.models import StreamState
    from usage.tasks import ingest_account_usage

    from ..celery_worker import broker_url

    hang = poison_account(tenancy.org, simulator, "poison-hang")
    start, end = SIM_NOW - timedelta(hours=6), SIM_NOW
    with running_worker(tmp_path, pool="prefork", app="tests.faults.poison_worker") as worker:
        with celery_app.connection_for_write(worker.options.get("broker") or broker_url()) as conn:
            ingest_account_usage.apply_async(
                args=[hang.pk, start.isoformat(), end.isoformat()],
                queue=worker.queue,
                connection=conn,
                # For this message only (the task's own are 600 / 660 s); the hang ignores the soft one.
                soft_time_limit=1,
                time_limit=3,
            )
        worker.wait_until(lambda: finished_runs(hang), "the hung run to be closed", WAIT)
        # The pool serves on: the next run of the same source is not blocked by a stale lease.
        assert worker.process is not None and worker.process.poll() is None
    [run] = finished_runs(hang)
    assert (run.status, run.error_kind) == (RunStatus.FAILED, ErrorKind.CRASHED)
    assert "killed at the hard time limit of 3 s" in run.error, run.error
    state = StreamState.objects.get(provider_account=hang, stream=Stream.USAGE)
    assert (state.lease_owner, state.lease_until) == ("", None)
    assert "Hard time limit (3" in worker.output(limit=None)
