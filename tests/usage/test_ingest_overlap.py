"""F5: three runs of one source started at once (beat + "Sync now" + a redelivered copy): one fetches.

Real threads, each with its own database connection, released together by a barrier. The lease
holder's first provider call waits until the other two have finished, so the overlap is certain
rather than a matter of timing.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from projects.models import ProviderAccount
from usage import ingest
from usage.models import IngestRun, RunStatus, Stream, StreamState, UsageRecord
from usage.providers.registry import connector_for
from usage.simulator.server import ProviderSimulator

from .conftest import sim_account
from .test_services_ingest import DAY_START, assert_matches_oracle


@pytest.mark.django_db(transaction=True)
def test_three_simultaneous_runs_fetch_once_and_advance_the_cursor_once(
    tenancy: Any, simulator: ProviderSimulator
) -> None:
    account = sim_account(tenancy.org, simulator, "reseller")
    ingest.stream_state(account, Stream.USAGE)
    end = DAY_START + timedelta(hours=3)
    barrier = threading.Barrier(3)
    others_done = threading.Event()
    lock = threading.Lock()
    statuses: list[str] = []
    calls_per_run: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            mine = ProviderAccount.objects.get(pk=account.pk)
            connector = connector_for(mine)
            connector.http.sleep = lambda _s: None
            real_get = connector.http.get_json
            calls = [0]

            def gated(*args: Any, **kwargs: Any) -> Any:
                calls[0] += 1
                assert others_done.wait(30), "the other runs never finished"
                return real_get(*args, **kwargs)

            connector.http.get_json = gated  # type: ignore[method-assign]
            barrier.wait(10)
            try:
                run = ingest.usage_ingest_window(account=mine, start=DAY_START, end=end, connector=connector)
            finally:
                connector.close()
            with lock:
                statuses.append(run.status)
                calls_per_run.append(calls[0])
                if statuses.count(RunStatus.SKIPPED) == 2:
                    others_done.set()
        except BaseException as exc:
            errors.append(exc)
            others_done.set()
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    calls_before = len(simulator.request_log)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert not errors, errors
    assert sorted(statuses) == sorted([RunStatus.SUCCESS, RunStatus.SKIPPED, RunStatus.SKIPPED])
    assert IngestRun.objects.filter(provider_account=account, status=RunStatus.SUCCESS).count() == 1
    assert sorted(calls_per_run)[:2] == [0, 0] and sorted(calls_per_run)[2] > 0  # exactly one run fetched
    assert len(simulator.request_log) - calls_before == max(calls_per_run)
    state = StreamState.objects.get(provider_account=account, stream=Stream.USAGE)
    assert state.cursor_at == end
    assert (state.lease_owner, state.lease_until) == ("", None)
    assert_matches_oracle(simulator, account, DAY_START, end)
    keys = list(UsageRecord.objects.filter(provider_account=account).values_list("dedupe_key", flat=True))
    assert len(keys) == len(set(keys))
