"""M2: after any sequence of ingests, overlapping re-ingests, revisions, late rows, crashes mid-batch,
month closes and reopens, and rebuilds, Σ rollup == Σ raw == the model of what was sent, exactly, per
(project, key, model, local day); a closed month's statement keeps the figures it was closed with and
its restatement delta is exactly what was sent since.

The organization is in Australia/Lord_Howe (30-minute DST change on 2026-04-05, +11:00 -> +10:30)
and the rows straddle the March/April month boundary.
"""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from billing.models import MonthStatement, StatementStatus
from billing.services.statements import (
    StatementError,
    period_close,
    period_reopen,
    restatement_delta,
    statement_lines,
    statement_verify,
)
from tests import factories
from usage.models import UsageDaily, UsageHourly, UsageRecord
from usage.providers.base import UsageRow
from usage.services import rollup_rebuild, rollup_refresh_days, usage_rows_upsert

TZ = zoneinfo.ZoneInfo("Australia/Lord_Howe")
# 2026-03-30 00:00 UTC .. +9 days: Apr 1 local starts 2026-03-31 13:00 UTC; DST ends 2026-04-04 15:00 UTC.
WINDOW_START = datetime(2026, 3, 30, tzinfo=UTC)
WINDOW_MINUTES = 9 * 24 * 60
NATURAL_KEYS = [f"nk{n}" for n in range(12)]
KEYS = ["ka", "kb", ""]  # ka belongs to project "p"; kb is created unassigned on first sight; "" is no key
MODELS = ["m-large", "m-small"]
MARCH = date(2026, 3, 1)  # the local month the window starts in; closing it is allowed from April


class InjectedCrash(RuntimeError):
    """The process "dies" part-way through an ingest (raised from inside its transaction)."""


Dims = tuple[str | None, str | None, str, date]

moments = st.builds(
    lambda minutes, seconds: WINDOW_START + timedelta(minutes=minutes, seconds=seconds),
    st.integers(0, WINDOW_MINUTES),
    st.integers(0, 59),
)
costs = st.decimals(min_value=0, max_value=50, places=10, allow_nan=False, allow_infinity=False)


def rows_strategy(when: st.SearchStrategy[datetime]) -> st.SearchStrategy[UsageRow]:
    return st.builds(
        lambda nk, at, key, slug, model, cost, tokens, requests, failed: UsageRow(
            occurred_at=at,
            model=model,
            natural_key=nk,
            input_tokens=tokens[0] + tokens[1],
            cache_read_tokens=tokens[1],
            output_tokens=tokens[2],
            requests=requests,
            cost=cost,
            status="error" if failed else "success",
            error_code="429" if failed else "",
            key_external_id=key,
            project_slug=slug,
        ),
        st.sampled_from(NATURAL_KEYS),
        when,
        st.sampled_from(KEYS),
        st.sampled_from(["", "p"]),
        st.sampled_from(MODELS),
        costs,
        st.tuples(st.integers(0, 10**6), st.integers(0, 10**5), st.integers(0, 10**6)),
        st.integers(1, 50),
        st.booleans(),
    )


class RollupMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.org = factories.make_org("Lord Howe", timezone="Australia/Lord_Howe")
        project = factories.make_project(self.org, "P", slug="p")
        self.account = factories.make_account(self.org)
        factories.make_key(self.org, project=project, account=self.account, name="ka")
        # make_key suffixes names; pin the external id the rows use.
        self.org.api_keys.filter(name__startswith="ka").update(external_id="ka")
        self.sent: dict[str, UsageRow] = {}
        # March's cost per model when it was closed (None while it is not closed).
        self.frozen: dict[str, Decimal] | None = None
        from django.db import connection

        import usage.services as services

        self._copy_path = connection.vendor == "postgresql" and services.COPY_THRESHOLD <= 1

    def _march_by_model(self) -> dict[str, Decimal]:
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for row in self.sent.values():
            if row.occurred_at.astimezone(TZ).date().replace(day=1) == MARCH:
                assert row.cost is not None
                totals[row.model] += row.cost
        return {model: cost for model, cost in totals.items() if cost}

    def _ingest(self, rows: list[UsageRow]) -> None:
        usage_rows_upsert(organization=self.org, rows=rows, account=self.account)
        for row in rows:
            self.sent[row.natural_key] = row

    @rule(rows=st.lists(rows_strategy(moments), min_size=1, max_size=6))
    def ingest(self, rows: list[UsageRow]) -> None:
        self._ingest(rows)

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def reingest_overlap(self, data: st.DataObject) -> None:
        again = data.draw(st.lists(st.sampled_from(sorted(self.sent)), min_size=1, max_size=6, unique=True))
        rows = [self.sent[nk] for nk in again]
        result = usage_rows_upsert(organization=self.org, rows=rows, account=self.account)
        assert (result.new, result.updated) == (0, 0)

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def revise(self, data: st.DataObject) -> None:
        nk = data.draw(st.sampled_from(sorted(self.sent)))
        revised = data.draw(rows_strategy(moments))
        self._ingest([UsageRow(**{**revised.__dict__, "natural_key": nk})])

    @rule(
        row=rows_strategy(st.builds(lambda d: WINDOW_START - timedelta(days=d, hours=5), st.integers(20, 40)))
    )
    def late_row(self, row: UsageRow) -> None:
        self._ingest([row])

    @rule(
        rows=st.lists(rows_strategy(moments), min_size=2, max_size=6),
        where=st.sampled_from(["second chunk", "rollups", "after everything"]),
    )
    def crash_mid_batch(self, rows: list[UsageRow], where: str) -> None:
        """An ingest dies part-way (after its first chunk, before or after its rollups): nothing of it lands."""
        import usage.services as services

        calls = {"writes": 0}
        write = services._write_postgres if self._copy_path else services._write_generic

        def second_write_dies(*args: Any, **kwargs: Any) -> Any:
            calls["writes"] += 1
            if calls["writes"] == 2:
                raise InjectedCrash(where)
            return write(*args, **kwargs)

        def dies(*args: Any, **kwargs: Any) -> None:
            raise InjectedCrash(where)

        target = {
            "second chunk": ("_write_postgres" if self._copy_path else "_write_generic", second_write_dies),
            "rollups": ("rollup_refresh_days", dies),
            "after everything": ("_touch_keys_last_used", dies),
        }[where]
        # One row per chunk, so "the second chunk" is a real mid-batch point on both write paths.
        with (
            mock.patch.object(services, "UPSERT_BATCH", 1),
            mock.patch.object(services, "COPY_BATCH", 1),
            mock.patch.object(services, target[0], target[1]),
        ):
            try:
                usage_rows_upsert(organization=self.org, rows=rows, account=self.account)
            except InjectedCrash:
                return  # not recorded in self.sent: the invariants check that nothing of it landed
        # The crash point was not reached (the COPY path updates rollups inside its INSERT; a batch
        # of rows already stored unchanged refreshes no rollups): the ingest completed and its rows count.
        for row in rows:
            self.sent[row.natural_key] = row

    @rule()
    def close_march(self) -> None:
        """Finance closes March; the statement freezes what was sent for it so far."""
        try:
            period_close(organization=self.org, month=MARCH, user=None, today=date(2026, 5, 1))
        except StatementError:
            assert self.frozen is not None  # only an already closed month refuses
            return
        assert self.frozen is None
        self.frozen = self._march_by_model()

    @precondition(lambda self: self.frozen is not None)
    @rule()
    def reopen_march(self) -> None:
        period_reopen(organization=self.org, month=MARCH, user=None, reason="late rows")
        self.frozen = None

    @rule(since=st.one_of(st.none(), st.dates(date(2026, 3, 28), date(2026, 4, 10))))
    def rebuild(self, since: date | None) -> None:
        rollup_rebuild(organization=self.org, since=since)

    @rule(days=st.lists(st.dates(date(2026, 2, 15), date(2026, 4, 10)), min_size=1, max_size=4))
    def refresh_days(self, days: list[date]) -> None:
        rollup_refresh_days(organization=self.org, days=days)

    @invariant()
    def a_closed_march_keeps_its_figures_and_its_delta_is_what_came_since(self) -> None:
        statement = MonthStatement.objects.filter(
            organization=self.org, month=MARCH, status=StatementStatus.CLOSED
        ).first()
        assert (statement is None) == (self.frozen is None)
        if statement is None or self.frozen is None:
            return
        assert statement_verify(statement)
        filed: dict[str, Decimal] = defaultdict(Decimal)
        for line in statement_lines(statement):
            filed[line.model] += line.cost
        assert {m: c for m, c in filed.items() if c} == self.frozen
        since: dict[str, Decimal] = defaultdict(Decimal)
        for delta in restatement_delta(statement=statement):
            since[delta.line.model] += delta.cost
        now = self._march_by_model()
        expected = {
            m: now.get(m, Decimal(0)) - self.frozen.get(m, Decimal(0)) for m in set(now) | set(self.frozen)
        }
        assert {m: c for m, c in since.items() if c} == {m: c for m, c in expected.items() if c}

    @invariant()
    def rollups_equal_raw_equal_sent(self) -> None:
        raw: dict[Dims, list[object]] = defaultdict(lambda: [Decimal(0), 0, 0, 0, 0])
        for r in UsageRecord.objects.filter(organization=self.org).select_related("project", "api_key"):
            dims = (
                r.project.slug if r.project else None,
                r.api_key.external_id if r.api_key else None,
                r.model,
                r.occurred_at.astimezone(TZ).date(),
            )
            _add(raw[dims], r.cost, r.input_tokens, r.cache_read_tokens, r.output_tokens, r.requests)
        rollup: dict[Dims, list[object]] = defaultdict(lambda: [Decimal(0), 0, 0, 0, 0])
        for d in UsageDaily.objects.filter(organization=self.org).select_related("project", "api_key"):
            dims = (
                d.project.slug if d.project else None,
                d.api_key.external_id if d.api_key else None,
                d.model,
                d.day,
            )
            _add(rollup[dims], d.cost, d.input_tokens, d.cache_read_tokens, d.output_tokens, d.requests)
        sent: dict[Dims, list[object]] = defaultdict(lambda: [Decimal(0), 0, 0, 0, 0])
        for row in self.sent.values():
            project = "p" if row.project_slug == "p" or row.key_external_id == "ka" else None
            dims = (project, row.key_external_id or None, row.model, row.occurred_at.astimezone(TZ).date())
            assert row.cost is not None
            _add(
                sent[dims], row.cost, row.input_tokens, row.cache_read_tokens, row.output_tokens, row.requests
            )
        assert dict(rollup) == dict(raw) == dict(sent)

        hourly: dict[tuple[str, datetime], list[object]] = defaultdict(lambda: [Decimal(0), 0, 0, 0, 0])
        for h in UsageHourly.objects.filter(organization=self.org):
            _add(
                hourly[(h.model, h.hour)],
                h.cost,
                h.input_tokens,
                h.cache_read_tokens,
                h.output_tokens,
                h.requests,
            )
        raw_hourly: dict[tuple[str, datetime], list[object]] = defaultdict(lambda: [Decimal(0), 0, 0, 0, 0])
        for r in UsageRecord.objects.filter(organization=self.org):
            hour = r.occurred_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            _add(
                raw_hourly[(r.model, hour)],
                r.cost,
                r.input_tokens,
                r.cache_read_tokens,
                r.output_tokens,
                r.requests,
            )
        assert dict(hourly) == dict(raw_hourly)


def _add(acc: list[object], cost: Decimal, inp: int, cache: int, out: int, requests: int) -> None:
    acc[0] = acc[0] + cost  # type: ignore[operator]
    for i, value in enumerate((inp, cache, out, requests), start=1):
        acc[i] = acc[i] + value  # type: ignore[operator]


@pytest.mark.django_db
def test_rollups_always_equal_raw_records_and_what_was_sent() -> None:
    run_state_machine_as_test(
        RollupMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


@pytest.mark.django_db
def test_rollups_equal_raw_records_through_the_postgresql_copy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same machine with every batch, however small, taking COPY + staging + INSERT ... ON CONFLICT."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the COPY path exists on PostgreSQL only")
    monkeypatch.setattr("usage.services.COPY_THRESHOLD", 1)
    run_state_machine_as_test(
        RollupMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
