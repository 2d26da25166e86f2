from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from billing.models import BalanceSnapshot, TopUp
from billing.tasks import dispatch_balance_polls, poll_account_balance
from projects.models import AccountStatus
from usage import tasks
from usage.models import IngestRun, Stream, StreamState, UsageRecord
from usage.providers import http
from usage.simulator.server import ProviderSimulator, SimClock

from .. import factories
from ..conftest import client_for
from .conftest import sim_account


@pytest.fixture
def live_simulator() -> Iterator[ProviderSimulator]:
    """A simulator whose clock follows real time (tasks compute windows from timezone.now())."""
    sim = ProviderSimulator(clock=SimClock(timezone.now().replace(microsecond=0)))
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def no_sleep(monkeypatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(http, "SLEEP", waits.append)
    return waits


def recent_cursor(account, hours: int = 1) -> None:
    StreamState.objects.update_or_create(
        provider_account=account,
        stream=Stream.USAGE,
        defaults={"cursor_at": timezone.now() - timedelta(hours=hours)},
    )


def test_dispatch_enqueues_due_accounts_after_commit_and_books_the_next_run(
    tenancy, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    sent: list[tuple[int, ...]] = []
    monkeypatch.setattr(tasks.ingest_account_usage, "delay", lambda *args: sent.append(args))
    due = factories.make_account(tenancy.org, "newapi", slug="gw")
    factories.make_account(tenancy.org, "deepseek", slug="ds")  # no usage API
    factories.make_account(tenancy.org, "openai", slug="oa", status=AccountStatus.NEEDS_ATTENTION)
    slow = factories.make_account(tenancy.org, "openai", slug="slow", usage_interval_minutes=60)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.dispatch_usage_ingests.apply().get() == 2
    assert sorted(sent) == sorted([(due.pk,), (slow.pk,)])
    booked = StreamState.objects.get(provider_account=slow, stream=Stream.USAGE).next_run_at
    assert booked is not None and booked - timezone.now() > timedelta(minutes=55)
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.dispatch_usage_ingests.apply().get() == 0
    assert sent == []


def test_a_rolled_back_transaction_enqueues_nothing(tenancy, django_capture_on_commit_callbacks) -> None:
    account = factories.make_account(tenancy.org, "newapi", slug="gw")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        try:
            with transaction.atomic():
                tasks.ingest_account_usage.delay_on_commit(account.pk)
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
    assert callbacks == []


def test_dispatch_balance_polls_skips_providers_without_a_balance(
    tenancy, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    sent: list[tuple[int, ...]] = []
    monkeypatch.setattr(poll_account_balance, "delay", lambda *args: sent.append(args))
    gateway = factories.make_account(tenancy.org, "newapi", slug="gw")
    factories.make_account(tenancy.org, "anthropic", slug="an")
    with django_capture_on_commit_callbacks(execute=True):
        dispatch_balance_polls.apply()
    assert sent == [(gateway.pk,)]


def test_the_ingest_task_takes_an_id_and_ingests_from_the_cursor(tenancy, live_simulator, no_sleep) -> None:
    account = sim_account(tenancy.org, live_simulator, "reseller")
    recent_cursor(account)
    result = tasks.ingest_account_usage.apply(args=[account.pk])
    assert result.get() == "success"
    assert UsageRecord.objects.filter(provider_account=account).exists()
    run = IngestRun.objects.get(provider_account=account)
    assert run.window_end - run.window_start == timedelta(hours=7)  # 1 h since the cursor + 6 h overlap


def test_an_ingest_that_wrote_rows_evaluates_the_organizations_alerts_after_commit(
    tenancy, live_simulator, no_sleep, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    import billing.tasks

    sent: list[tuple[int, ...]] = []
    monkeypatch.setattr(billing.tasks.evaluate_alerts, "delay", lambda *args: sent.append(args))
    account = sim_account(tenancy.org, live_simulator, "reseller")
    recent_cursor(account)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.ingest_account_usage.apply(args=[account.pk]).get() == "success"
    assert sent == [(tenancy.org.pk,)]
    # A failed run changed no rollups: nothing to evaluate.
    sent.clear()
    bad = sim_account(tenancy.org, live_simulator, "openai")
    recent_cursor(bad)
    live_simulator.inject("openai", "unauthorized", times=100)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.ingest_account_usage.apply(args=[bad.pk]).get() == "failed"
    assert sent == []


def test_a_transient_failure_is_retried_by_celery_then_given_up(tenancy, live_simulator, no_sleep) -> None:
    account = sim_account(tenancy.org, live_simulator, "openai")
    recent_cursor(account)
    live_simulator.inject("openai", "server_error", times=100)
    result = tasks.ingest_account_usage.apply(args=[account.pk])
    assert result.failed()
    assert isinstance(result.result, tasks.TransientIngestError)
    runs = IngestRun.objects.filter(provider_account=account)
    assert runs.count() == 4  # first try + max_retries=3
    assert set(runs.values_list("error_kind", flat=True)) == {"transient"}


def test_the_circuit_breaker_opens_after_five_transient_failures_backs_off_and_a_success_closes_it(
    tenancy, live_simulator, no_sleep, django_capture_on_commit_callbacks, monkeypatch, settings
) -> None:
    """F4: a provider failing 5xx for hours is not hammered: Celery retries once, then the schedule
    leaves it alone for a doubling pause (capped); healthy accounts keep their schedule; a success resets."""
    settings.INGEST_BREAKER_FAILURES = 5
    settings.INGEST_BREAKER_MAX_MINUTES = 40
    sent: list[tuple[int, ...]] = []
    monkeypatch.setattr(tasks.ingest_account_usage, "delay", lambda *args: sent.append(args))
    failing = sim_account(tenancy.org, live_simulator, "openai")
    healthy = sim_account(tenancy.org, live_simulator, "reseller")
    recent_cursor(failing)
    recent_cursor(healthy)
    live_simulator.inject("openai", "server_error", times=10_000)

    def state():
        return StreamState.objects.get(provider_account=failing, stream=Stream.USAGE)

    def provider_calls() -> int:
        return sum(1 for r in live_simulator.request_log if r.account_slug == "openai")

    # First dispatch: four runs (a try and Celery's three retries), the breaker still closed.
    assert isinstance(tasks.ingest_account_usage.apply(args=[failing.pk]).result, tasks.TransientIngestError)
    assert state().consecutive_failures == 4
    # The fifth failure opens it: no Celery retry, and the schedule is pushed out by 2 x 5 min.
    now = timezone.now()
    assert tasks.ingest_account_usage.apply(args=[failing.pk]).get() == "failed"
    assert state().consecutive_failures == 5
    assert timedelta(minutes=9) < state().next_run_at - now <= timedelta(minutes=10, seconds=5)
    run = IngestRun.objects.filter(provider_account=failing).latest("pk")
    assert "circuit open after 5 failures in a row: next try in 10 min" in run.error
    with django_capture_on_commit_callbacks(execute=True):
        tasks.dispatch_usage_ingests.apply()
    assert (failing.pk,) not in sent and (healthy.pk,) in sent
    # The data sources page says so, and when the next try comes.
    page = client_for(tenancy.admin).get(f"/o/{tenancy.org.slug}/sources/").content.decode()
    assert "paused after 5 failures in a row (circuit open)" in page

    # Each further failure doubles the pause, up to the cap; each is one call burst, never retried.
    calls = provider_calls()
    for failures, pause in ((6, 20), (7, 40), (8, 40)):
        assert tasks.ingest_account_usage.apply(args=[failing.pk]).get() == "failed"
        assert state().consecutive_failures == failures
        assert (
            f"next try in {pause} min"
            in IngestRun.objects.filter(provider_account=failing).latest("pk").error
        )
    assert provider_calls() - calls == 3 * 4  # each run's own bounded tries (4), nothing more

    # The provider recovers: the next run succeeds and closes the breaker.
    live_simulator.clear_faults("openai")
    assert tasks.ingest_account_usage.apply(args=[failing.pk]).get() == "success"
    assert state().consecutive_failures == 0
    page = client_for(tenancy.admin).get(f"/o/{tenancy.org.slug}/sources/").content.decode()
    assert "paused after" not in page  # (the recent-runs list still shows the failed runs)


def test_an_auth_failure_is_not_retried(tenancy, live_simulator, no_sleep) -> None:
    account = sim_account(tenancy.org, live_simulator, "openai")
    recent_cursor(account)
    live_simulator.inject("openai", "unauthorized", times=100)
    assert tasks.ingest_account_usage.apply(args=[account.pk]).get() == "failed"
    assert IngestRun.objects.filter(provider_account=account).count() == 1
    account.refresh_from_db()
    assert account.status == AccountStatus.NEEDS_ATTENTION


def test_one_failing_account_does_not_block_another(tenancy, live_simulator, no_sleep) -> None:
    bad = sim_account(tenancy.org, live_simulator, "openai", credential="revoked")
    good = sim_account(tenancy.org, live_simulator, "reseller")
    recent_cursor(bad)
    recent_cursor(good)
    assert tasks.ingest_account_usage.apply(args=[bad.pk]).get() == "failed"
    assert tasks.ingest_account_usage.apply(args=[good.pk]).get() == "success"


def test_the_balance_task_stores_the_snapshot_and_top_ups(tenancy, live_simulator, no_sleep) -> None:
    account = sim_account(tenancy.org, live_simulator, "reseller")
    assert poll_account_balance.apply(args=[account.pk]).get() == "success"
    snapshot = BalanceSnapshot.objects.get(provider_account=account)
    state = live_simulator.balance("reseller")
    assert (snapshot.raw_quota, snapshot.remaining) == (state.quota, state.remaining)
    assert TopUp.objects.filter(provider_account=account).exists()
    # Idempotent by order number.
    count = TopUp.objects.count()
    poll_account_balance.apply(args=[account.pk])
    assert TopUp.objects.count() == count


def test_a_missing_account_ends_quietly(db) -> None:
    assert tasks.ingest_account_usage.apply(args=[987654]).get() == "missing"
    assert poll_account_balance.apply(args=[987654]).get() == "missing"


def test_the_beat_schedule_runs_both_dispatchers_with_expiry() -> None:
    from config.celery import app

    entries = {e["task"]: e for e in app.conf.beat_schedule.values()}
    for name in ("usage.tasks.dispatch_usage_ingests", "billing.tasks.dispatch_balance_polls"):
        assert entries[name]["options"]["expires"] <= 60


def test_window_with_explicit_iso_bounds(tenancy, live_simulator, no_sleep) -> None:
    account = sim_account(tenancy.org, live_simulator, "reseller")
    end = timezone.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=2)
    assert (
        tasks.ingest_account_usage.apply(args=[account.pk, start.isoformat(), end.isoformat()]).get()
        == "success"
    )
    run = IngestRun.objects.get(provider_account=account)
    assert (run.window_start, run.window_end) == (start, end)
    assert isinstance(datetime.fromisoformat(start.isoformat()), datetime)
