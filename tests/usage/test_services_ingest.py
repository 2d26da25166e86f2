from __future__ import annotations

import json
import logging
import os
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import Count, Sum
from django.db.models.functions import TruncDate

from projects.models import AccountStatus, ProviderAccount
from usage import ingest
from usage.models import CostSource, IngestRun, RunStatus, Stream, StreamState, UsageDaily, UsageRecord
from usage.providers.registry import connector_for
from usage.simulator.server import ProviderSimulator

from .. import factories
from .conftest import SIM_NOW, sim_account
from .loopback import Loopback, fixture, reply

DAY_START = datetime(2026, 11, 18, tzinfo=UTC)
DAY_END = DAY_START + timedelta(days=1)


def run_window(
    account: ProviderAccount, start: datetime, end: datetime, sleeps: list[float] | None = None
) -> IngestRun:
    connector = connector_for(account)
    connector.http.sleep = (sleeps if sleeps is not None else []).append  # record waits instead of sleeping
    try:
        return ingest.usage_ingest_window(account=account, start=start, end=end, connector=connector)
    finally:
        connector.close()


def stored_totals(
    account: ProviderAccount, status: str = "success"
) -> dict[tuple[date, str], dict[str, Any]]:
    rows = (
        UsageRecord.objects.filter(provider_account=account, status=status)
        .annotate(utc_day=TruncDate("occurred_at", tzinfo=UTC))
        .values("utc_day", "model")
        .annotate(
            requests=Sum("requests"), input=Sum("input_tokens"), output=Sum("output_tokens"), cost=Sum("cost")
        )
    )
    return {(r["utc_day"], r["model"]): r for r in rows}


def assert_matches_oracle(
    sim: ProviderSimulator, account: ProviderAccount, start: datetime, end: datetime, *, requests: bool = True
) -> None:
    expected = sim.expected_usage(account.slug, start, end)
    stored = stored_totals(account)
    assert set(stored) == set(expected)
    for key, want in expected.items():
        got = stored[key]
        assert (got["input"], got["output"], got["cost"]) == (
            want.input_tokens,
            want.output_tokens,
            want.cost,
        ), key
        if requests:
            assert got["requests"] == want.requests, key


@pytest.mark.parametrize("slug", ["reseller", "legacy-gateway", "openai"])
def test_per_day_and_model_totals_equal_the_simulator_oracle_to_the_cent(tenancy, simulator, slug) -> None:
    account = sim_account(tenancy.org, simulator, slug)
    run = run_window(account, DAY_START, DAY_END)
    assert run.status == RunStatus.SUCCESS, run.error
    assert run.rows_new > 0
    assert_matches_oracle(simulator, account, DAY_START, DAY_END)


def test_anthropic_tokens_and_billed_cost_equal_the_oracle(tenancy, simulator) -> None:
    account = sim_account(tenancy.org, simulator, "anthropic")
    run = run_window(account, DAY_START, DAY_END)
    assert run.status == RunStatus.SUCCESS, run.error
    # The usage report has no request count: tokens and billed cost must still match exactly.
    assert_matches_oracle(simulator, account, DAY_START, DAY_END, requests=False)


def test_openrouter_activity_matches_the_oracle_per_day_and_model(tenancy, simulator) -> None:
    account = sim_account(tenancy.org, simulator, "openrouter")
    for world_key in ("a3f9c2e1b7d4", "7be01d9c55aa"):
        factories.make_key(tenancy.org, account=account, name="k").__class__.objects.filter(
            provider_account=account, external_id__startswith="k-"
        ).update(external_id=world_key)
    run = run_window(account, DAY_START - timedelta(days=2), DAY_END)
    assert run.status == RunStatus.SUCCESS, run.error
    assert_matches_oracle(simulator, account, DAY_START - timedelta(days=2), DAY_END)
    assert not UsageRecord.objects.filter(provider_account=account, api_key__isnull=True).exists()


def test_gateway_error_logs_become_error_rows_with_codes(tenancy, simulator) -> None:
    account = sim_account(tenancy.org, simulator, "reseller")
    storm_day = datetime.combine(simulator.anchor - timedelta(days=10), datetime.min.time(), tzinfo=UTC)
    run_window(account, storm_day, storm_day + timedelta(days=1))
    expected_errors = sum(
        t.errors
        for t in simulator.expected_usage("reseller", storm_day, storm_day + timedelta(days=1)).values()
    )
    errors = UsageRecord.objects.filter(provider_account=account, status="error")
    assert expected_errors > 0
    assert errors.aggregate(n=Sum("requests"))["n"] == expected_errors
    assert set(errors.values_list("error_code", flat=True)) <= {
        "upstream_rate_limited",
        "token_quota_exhausted",
    }


def test_stored_quota_equals_the_gateway_stat_endpoint(tenancy, simulator) -> None:
    account = sim_account(tenancy.org, simulator, "reseller")
    run_window(account, DAY_START, DAY_END)
    stored = UsageRecord.objects.filter(provider_account=account, status="success").aggregate(
        q=Sum("raw_quota")
    )["q"]
    assert stored == simulator.expected_quota("reseller", DAY_START, DAY_END)


def test_a_second_ingest_changes_nothing(tenancy, simulator) -> None:
    account = sim_account(tenancy.org, simulator, "openai")
    first = run_window(account, DAY_START, DAY_END)
    before = list(UsageRecord.objects.order_by("pk").values_list("pk", "cost", "ingested_at"))
    second = run_window(account, DAY_START, DAY_END)
    assert (second.rows_new, second.rows_updated) == (0, 0)
    assert second.rows_unchanged == first.rows_new
    assert list(UsageRecord.objects.order_by("pk").values_list("pk", "cost", "ingested_at")) == before


def test_an_overlapping_re_read_never_double_counts(tenancy, simulator) -> None:
    account = sim_account(tenancy.org, simulator, "reseller")
    run_window(account, DAY_START, DAY_START + timedelta(hours=14))
    run_window(account, DAY_START + timedelta(hours=8), DAY_END)
    assert_matches_oracle(simulator, account, DAY_START, DAY_END)


def test_a_revised_bucket_updates_in_place(tenancy, simulator) -> None:
    account = sim_account(tenancy.org, simulator, "openai")
    run_window(account, DAY_START, DAY_END)
    count = UsageRecord.objects.count()
    simulator.revise("openai", DAY_START + timedelta(hours=9), 2)
    again = run_window(account, DAY_START, DAY_END)
    assert again.rows_new == 0
    assert again.rows_updated > 0
    assert UsageRecord.objects.count() == count
    assert_matches_oracle(simulator, account, DAY_START, DAY_END)


def test_twins_in_one_second_are_both_kept(tenancy, simulator) -> None:
    account = sim_account(tenancy.org, simulator, "reseller")
    at = DAY_START + timedelta(hours=5, minutes=7, seconds=3)
    simulator.twins("reseller", at)
    run_window(account, DAY_START, DAY_END)
    in_second = UsageRecord.objects.filter(provider_account=account, occurred_at=at)
    twin_groups = in_second.values("model", "input_tokens", "output_tokens", "raw_quota").annotate(
        n=Count("id")
    )
    assert max(g["n"] for g in twin_groups) == 2
    assert_matches_oracle(simulator, account, DAY_START, DAY_END)
    # A re-read over a different window still sees exactly the two.
    run_window(account, at - timedelta(minutes=1), at + timedelta(minutes=1))
    assert max(g["n"] for g in twin_groups.all()) == 2


def test_openai_billed_cost_wins_through_adjustment_rows(tenancy, simulator) -> None:
    account = sim_account(tenancy.org, simulator, "openai")
    run_window(account, DAY_START, DAY_END)
    adjustments = UsageRecord.objects.filter(
        provider_account=account, requests=0, cost_source=CostSource.PROVIDER
    )
    estimated = UsageRecord.objects.filter(provider_account=account, cost_source=CostSource.PRICE)
    assert estimated.exists()
    assert adjustments.count() == estimated.values("model").distinct().count()
    assert adjustments.aggregate(t=Sum("input_tokens"))["t"] == 0


def test_rollups_are_refreshed_with_the_rows(tenancy, simulator) -> None:
    account = sim_account(tenancy.org, simulator, "reseller")
    run_window(account, DAY_START, DAY_END)
    raw = UsageRecord.objects.filter(provider_account=account).aggregate(c=Sum("cost"))["c"]
    assert UsageDaily.objects.filter(provider_account=account).aggregate(c=Sum("cost"))["c"] == raw


@pytest.mark.parametrize(
    ("mode", "params"),
    [
        ("rate_limit", {"retry_after": 7}),
        ("server_error", {}),
        ("bad_gateway_html", {}),
        ("truncated", {}),
    ],
)
def test_transient_faults_are_retried_and_the_run_completes(tenancy, simulator, mode, params) -> None:
    account = sim_account(tenancy.org, simulator, "reseller")
    simulator.inject("reseller", mode, times=1, **params)
    sleeps: list[float] = []
    run = run_window(account, DAY_START, DAY_START + timedelta(hours=2), sleeps)
    assert run.status == RunStatus.SUCCESS, run.error
    assert len(sleeps) == 1
    if mode == "rate_limit":
        assert sleeps[0] >= 7  # no call before Retry-After
    assert_matches_oracle(simulator, account, DAY_START, DAY_START + timedelta(hours=2))


@pytest.mark.parametrize(("mode", "params"), [("stall", {"seconds": 30}), ("drip", {"interval": 0.25})])
def test_a_stalled_or_trickling_answer_is_cut_at_the_timeout_and_retried(
    tenancy, simulator, settings, mode, params
) -> None:
    """A 30 s stall before the headers, or a body sent a byte every 0.25 s (no single read ever
    times out): each call ends at the configured timeout, the retry completes the run."""
    settings.PROVIDER_HTTP_TIMEOUT_SECONDS = 1.5
    account = sim_account(tenancy.org, simulator, "reseller")
    simulator.inject("reseller", mode, times=1, **params)
    sleeps: list[float] = []
    started = time.monotonic()
    run = run_window(account, DAY_START, DAY_START + timedelta(hours=2), sleeps)
    elapsed = time.monotonic() - started
    assert run.status == RunStatus.SUCCESS, run.error
    assert len(sleeps) == 1  # one timeout, one retry (the waits are recorded, not slept)
    # The faulty call gave up at the timeout, not after the stall or the trickle (30 s, minutes).
    assert elapsed < 1.5 * 4
    assert_matches_oracle(simulator, account, DAY_START, DAY_START + timedelta(hours=2))


def test_a_5mb_answer_is_refused_without_storing_anything_and_the_next_run_recovers(
    tenancy, simulator
) -> None:
    account = sim_account(tenancy.org, simulator, "reseller")
    simulator.inject("reseller", "huge", times=1)
    run = run_window(account, DAY_START, DAY_START + timedelta(hours=2))
    assert (run.status, run.error_kind) == (RunStatus.FAILED, "provider")
    assert "response larger than 4194304 bytes refused" in run.error
    assert UsageRecord.objects.filter(provider_account=account).count() == 0
    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE
    assert run_window(account, DAY_START, DAY_START + timedelta(hours=2)).status == RunStatus.SUCCESS
    assert_matches_oracle(simulator, account, DAY_START, DAY_START + timedelta(hours=2))


def test_persistent_5xx_fails_transiently_after_bounded_tries_and_keeps_the_cursor(
    tenancy, simulator
) -> None:
    account = sim_account(tenancy.org, simulator, "openai")
    simulator.inject("openai", "server_error", times=10)
    sleeps: list[float] = []
    run = run_window(account, DAY_START, DAY_END, sleeps)
    assert (run.status, run.error_kind) == (RunStatus.FAILED, "transient")
    assert len(sleeps) == 3  # 4 tries
    assert all(wait <= 60 for wait in sleeps)
    assert StreamState.objects.get(provider_account=account, stream=Stream.USAGE).cursor_at is None
    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE


def test_success_false_fails_the_run_without_pausing_the_account(tenancy, simulator) -> None:
    account = sim_account(tenancy.org, simulator, "reseller")
    simulator.inject("reseller", "success_false")
    run = run_window(account, DAY_START, DAY_START + timedelta(hours=1))
    assert (run.status, run.error_kind) == (RunStatus.FAILED, "transient")
    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE
    assert run_window(account, DAY_START, DAY_START + timedelta(hours=1)).status == RunStatus.SUCCESS


@pytest.mark.parametrize("mode", ["unauthorized", "forbidden"])
def test_401_and_403_mark_the_account_needs_attention_without_retrying(tenancy, simulator, mode) -> None:
    account = sim_account(tenancy.org, simulator, "openai")
    simulator.inject("openai", mode, times=5)
    calls_before = len(simulator.request_log)
    run = run_window(account, DAY_START, DAY_END)
    assert (run.status, run.error_kind) == (RunStatus.FAILED, "auth")
    # Not retried: exactly one call of this run met the fault. (Count by fault, not all requests:
    # on a loaded machine a request of an earlier test may still land in the shared log.)
    answered = [
        r for r in simulator.request_log[calls_before:] if r.account_slug == "openai" and r.fault == mode
    ]
    assert len(answered) == 1
    account.refresh_from_db()
    assert account.status == AccountStatus.NEEDS_ATTENTION
    assert "credential revoked" in account.status_message or "permission" in account.status_message
    assert "sim-openai-secret" not in account.status_message + run.error


def test_a_gateway_bad_token_marks_the_account_needs_attention(tenancy, simulator) -> None:
    account = sim_account(tenancy.org, simulator, "reseller", credential="wrong-token-value")
    run = run_window(account, DAY_START, DAY_END)
    assert run.error_kind == "auth"
    account.refresh_from_db()
    assert account.status == AccountStatus.NEEDS_ATTENTION


def test_a_held_lease_makes_a_concurrent_run_skip(tenancy, simulator) -> None:
    account = sim_account(tenancy.org, simulator, "reseller")
    state = ingest.stream_state(account, Stream.USAGE)
    assert ingest.lease_acquire(state, "other-worker")
    calls_before = len(simulator.request_log)
    run = run_window(account, DAY_START, DAY_END)
    assert run.status == RunStatus.SKIPPED
    assert len(simulator.request_log) == calls_before
    assert not ingest.lease_acquire(state, "third-worker")


def test_a_copy_of_a_running_task_skips_but_takes_over_from_a_dead_process_of_the_same_task(
    tenancy, simulator
) -> None:
    """Redis may hand a second copy of a message to another worker while the first still runs (F8);
    Celery requeues the message of a pool child that died (F10, reject_on_worker_lost)."""
    import subprocess
    import sys

    account = sim_account(tenancy.org, simulator, "reseller")
    state = ingest.stream_state(account, Stream.USAGE)
    running = ingest.execution_owner("task-1")  # this live process
    assert ingest.lease_acquire(state, running)
    copy = running.replace(f":{os.getpid()}@", ":1@")  # pid 1 is alive (init): a copy elsewhere on this host
    assert not ingest.lease_acquire(state, copy)
    assert not ingest.lease_acquire(state, ingest.execution_owner("task-2"))

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = running.replace(f":{os.getpid()}@", f":{int(gone.stdout)}@")
    StreamState.objects.filter(pk=state.pk).update(lease_owner=dead)
    assert not ingest.lease_acquire(state, ingest.execution_owner("task-2"))  # another task: waits
    assert not ingest.lease_acquire(state, dead.replace("@", "@x"))  # same task, another host: waits
    assert ingest.lease_acquire(state, running)  # the requeued copy on this host takes over
    state.refresh_from_db()
    assert state.lease_owner == running


def test_a_lapsed_lease_is_taken_over(tenancy, simulator) -> None:
    account = sim_account(tenancy.org, simulator, "reseller")
    state = ingest.stream_state(account, Stream.USAGE)
    StreamState.objects.filter(pk=state.pk).update(
        lease_owner="dead", lease_until=SIM_NOW - timedelta(days=400)
    )
    run = run_window(account, DAY_START, DAY_START + timedelta(hours=1))
    assert run.status == RunStatus.SUCCESS
    state.refresh_from_db()
    assert (state.lease_owner, state.lease_until) == ("", None)


def test_the_cursor_advances_only_with_committed_chunks(tenancy, simulator) -> None:
    account = sim_account(tenancy.org, simulator, "reseller")
    start = DAY_START - timedelta(days=1)
    # Day one succeeds; day two hits a persistent 500 (its first page is the 5th-ish request).
    ok = run_window(account, start, DAY_START)
    state = StreamState.objects.get(provider_account=account, stream=Stream.USAGE)
    assert state.cursor_at == DAY_START
    simulator.inject("reseller", "server_error", times=10)
    failed = run_window(account, DAY_START, DAY_END)
    assert failed.status == RunStatus.FAILED
    state.refresh_from_db()
    assert state.cursor_at == DAY_START
    assert ok.rows_new == UsageRecord.objects.filter(provider_account=account).count()


def test_ingest_account_reads_from_the_cursor_minus_the_overlap(tenancy, simulator, monkeypatch) -> None:
    account = sim_account(tenancy.org, simulator, "reseller")
    StreamState.objects.create(
        provider_account=account, stream=Stream.USAGE, cursor_at=SIM_NOW - timedelta(hours=1)
    )
    monkeypatch.setattr(ingest.timezone, "now", lambda: SIM_NOW)
    run = ingest.usage_ingest_account(account=account)
    assert run.window_start == SIM_NOW - timedelta(hours=7)
    assert run.window_end == SIM_NOW


def test_the_worked_example_is_stored_unrounded_next_to_the_raw_quota(tenancy, loopback: Loopback) -> None:
    item = json.loads(fixture("newapi/log_page3.json"))["data"]["items"][0]
    loopback.route("/api/log/self", reply({"success": True, "data": {"items": [item], "total": 1}}))
    # First the model's default quota_per_unit (New API's 500,000), then an account with its own.
    for overrides, expected in (
        ({}, Decimal("49.995818")),
        ({"quota_per_unit": 1_000_000}, Decimal("24.997909")),
    ):
        account = factories.make_account(tenancy.org, "newapi", base_url=loopback.url, **overrides)
        run = ingest.usage_ingest_window(account=account, start=DAY_START - timedelta(days=400), end=SIM_NOW)
        assert run.status == RunStatus.SUCCESS, run.error
        record = UsageRecord.objects.get(provider_account=account)
        assert (record.cost, record.raw_quota, record.cost_source) == (
            expected,
            24997909,
            CostSource.PROVIDER,
        )


def test_a_model_without_a_price_is_stored_unpriced(tenancy, loopback: Loopback) -> None:
    loopback.routes["/v1/organization/usage/completions"] = lambda q: reply(
        "openai/usage_page2.json" if q.get("page") else "openai/usage_page1.json"
    )
    loopback.route("/v1/organization/costs", reply({"object": "page", "data": [], "has_more": False}))
    account = factories.make_account(tenancy.org, "openai", base_url=loopback.url)
    run = ingest.usage_ingest_window(
        account=account, start=datetime(2026, 1, 1, tzinfo=UTC), end=datetime(2026, 1, 1, 3, tzinfo=UTC)
    )
    assert run.status == RunStatus.SUCCESS, run.error
    assert UsageRecord.objects.get(model="mystery-model-9").cost_source == CostSource.UNPRICED
    priced = UsageRecord.objects.get(model="gpt-4.1-mini")
    # 80,000 uncached x 0.4 + 40,000 cached x 0.1 + 9,000 output x 1.6, per 1M.
    assert (priced.cost_source, priced.cost) == (CostSource.PRICE, Decimal("0.0504"))
    # A dated snapshot name is priced too (shipped as an alias of gpt-4o).
    assert UsageRecord.objects.get(model="gpt-4o-2024-08-06").cost_source == CostSource.PRICE


def test_the_credential_never_reaches_logs_runs_or_accounts(
    tenancy, loopback: Loopback, caplog, settings
) -> None:
    canary = f"qb-canary-{uuid.uuid4()}"
    settings.PROVIDER_HTTP_TIMEOUT_SECONDS = 0.5
    caplog.set_level(logging.DEBUG)
    account = factories.make_account(tenancy.org, "newapi", base_url=loopback.url, credential=canary)
    echo = {"success": False, "message": f"bad token {canary}"}
    scenarios = {
        "success": [reply("newapi/log_page3.json")],
        "401": [reply(echo, status=401)],
        "500": [reply({"error": {"message": f"boom for Bearer {canary}"}}, status=500)],
        "timeout": [reply("newapi/log_page3.json") for _ in range(4)],
    }
    for name, replies in scenarios.items():
        if name == "timeout":
            for item in replies:
                item.delay = 1.0
        loopback.route("/api/log/self", *replies)
        connector = connector_for(account)
        connector.http.sleep = lambda _s: None
        run = ingest.usage_ingest_window(account=account, start=DAY_START, end=DAY_END, connector=connector)
        connector.close()
        account.refresh_from_db()
        assert canary not in run.error, name
        assert canary not in account.status_message, name
        ProviderAccount.objects.filter(pk=account.pk).update(status=AccountStatus.ACTIVE)
    stored = " ".join(IngestRun.objects.values_list("error", flat=True))
    assert "timeout" in stored and "HTTP 500" in stored and "HTTP 401" in stored
    assert canary not in caplog.text
    assert canary not in stored
