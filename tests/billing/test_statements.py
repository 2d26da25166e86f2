"""Month close: frozen statements keep their hash when late data arrives; the delta is that late data, exactly."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine

from billing.models import MonthEvent, MonthStatement, StatementLine, StatementStatus
from billing.services.statements import (
    StatementError,
    delta_totals,
    lines_hash,
    live_lines,
    period_close,
    period_reopen,
    restatement_delta,
    statement_lines,
    statement_verify,
)
from tests import factories
from tests.conftest import Tenancy, client_for
from usage.services import usage_rows_upsert

OCT = date(2026, 10, 1)
NOW = datetime(2026, 11, 20, 15, tzinfo=UTC)


def _seed(t: Tenancy) -> tuple[object, object]:
    account = factories.make_account(t.org, "newapi", name="Reseller")
    key = factories.make_key(t.org, project=t.project, account=account, name="chat")
    rows = [
        factories.usage_row(
            datetime(2026, 10, 3, 12, tzinfo=UTC),
            cost="1.10",
            key=key.external_id,
            natural_key="a",
            input_tokens=100,
            output_tokens=10,
        ),
        factories.usage_row(
            datetime(2026, 10, 9, 12, tzinfo=UTC),
            cost="2.0000000001",
            key=key.external_id,
            natural_key="b",
            model="claude-sonnet-4-5",
        ),
        factories.usage_row(datetime(2026, 10, 21, 12, tzinfo=UTC), cost="3.00", natural_key="c"),
        factories.usage_row(
            datetime(2026, 11, 2, 12, tzinfo=UTC), cost="4.00", key=key.external_id, natural_key="d"
        ),
    ]
    usage_rows_upsert(organization=t.org, rows=rows, account=account)
    return account, key


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_a_closed_statement_keeps_its_hash_and_the_delta_equals_the_late_data(tenancy: Tenancy) -> None:
    account, key = _seed(tenancy)
    statement = period_close(organization=tenancy.org, month=OCT, user=tenancy.finance)
    frozen_hash = statement.content_hash
    frozen_totals = dict(statement.totals)
    assert statement.totals["USD"]["cost"] == "6.1000000001"
    assert statement.totals["USD"]["cost_rounded"] == "6.10"
    assert restatement_delta(statement=statement) == []

    # The provider revises row "a" (1.10 -> 1.35, +50 input tokens) and two October rows arrive late;
    # a November row arrives too (not October's business).
    late = [
        factories.usage_row(
            datetime(2026, 10, 3, 12, tzinfo=UTC),
            cost="1.35",
            key=key.external_id,
            natural_key="a",
            input_tokens=150,
            output_tokens=10,
        ),
        factories.usage_row(
            datetime(2026, 10, 30, 23, tzinfo=UTC), cost="0.0000000007", key=key.external_id, natural_key="e"
        ),
        factories.usage_row(
            datetime(2026, 10, 31, 1, tzinfo=UTC), cost="0.50", natural_key="f", model="deepseek-chat"
        ),
        factories.usage_row(datetime(2026, 11, 3, 1, tzinfo=UTC), cost="8.00", natural_key="g"),
    ]
    usage_rows_upsert(organization=tenancy.org, rows=late, account=account)

    statement.refresh_from_db()
    assert statement.content_hash == frozen_hash
    assert statement.totals == frozen_totals
    assert statement_verify(statement)
    deltas = restatement_delta(statement=statement)
    assert delta_totals(deltas) == {
        "USD": Decimal("1.35") - Decimal("1.10") + Decimal("0.0000000007") + Decimal("0.50")
    }
    by_model = {(d.line.model, d.line.project_id): d for d in deltas}
    assert by_model[("gpt-4o", tenancy.project.pk)].cost == Decimal("0.2500000007")
    assert by_model[("gpt-4o", tenancy.project.pk)].tokens == 50
    assert by_model[("gpt-4o", tenancy.project.pk)].requests == 1
    assert by_model[("deepseek-chat", None)].frozen is None
    assert by_model[("deepseek-chat", None)].cost == Decimal("0.50")
    # The live month now hashes differently; the frozen one does not move.
    assert (
        lines_hash(organization=tenancy.org, month=OCT, lines=live_lines(organization=tenancy.org, month=OCT))
        != frozen_hash
    )


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_closing_copies_every_line_with_exact_costs_and_tokens(tenancy: Tenancy) -> None:
    _seed(tenancy)
    statement = period_close(organization=tenancy.org, month=OCT, user=tenancy.admin)
    assert {(line.model, line.cost) for line in statement_lines(statement)} == {
        ("gpt-4o", Decimal("1.10")),
        ("claude-sonnet-4-5", Decimal("2.0000000001")),
        ("gpt-4o", Decimal("3.00")),
    }
    assert (
        StatementLine.objects.filter(statement=statement, project=tenancy.project, model="gpt-4o")
        .get()
        .input_tokens
        == 100
    )
    assert MonthEvent.objects.filter(kind="closed", statement=statement, user=tenancy.admin).exists()


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_an_open_month_cannot_be_closed_and_a_closed_one_not_twice(tenancy: Tenancy) -> None:
    _seed(tenancy)
    with pytest.raises(StatementError, match="has not ended"):
        period_close(organization=tenancy.org, month=date(2026, 11, 1), user=tenancy.finance)
    period_close(organization=tenancy.org, month=OCT, user=tenancy.finance)
    with pytest.raises(StatementError, match="already closed"):
        period_close(organization=tenancy.org, month=OCT, user=tenancy.finance)


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_reopening_needs_a_reason_is_audited_and_a_new_close_is_the_next_version(tenancy: Tenancy) -> None:
    account, _key = _seed(tenancy)
    first = period_close(organization=tenancy.org, month=OCT, user=tenancy.finance)
    with pytest.raises(StatementError, match="reason"):
        period_reopen(organization=tenancy.org, month=OCT, user=tenancy.finance, reason="   ")
    period_reopen(
        organization=tenancy.org, month=OCT, user=tenancy.finance, reason="Provider revised invoices"
    )
    first.refresh_from_db()
    assert first.status == StatementStatus.REOPENED and first.reopen_reason == "Provider revised invoices"
    assert (
        MonthEvent.objects.filter(
            kind="reopened", reason="Provider revised invoices", user=tenancy.finance
        ).count()
        == 1
    )
    usage_rows_upsert(
        organization=tenancy.org,
        rows=[factories.usage_row(datetime(2026, 10, 5, tzinfo=UTC), cost="0.40")],
        account=account,
    )
    second = period_close(organization=tenancy.org, month=OCT, user=tenancy.finance)
    assert second.version == 2
    assert Decimal(second.totals["USD"]["cost"]) == Decimal(first.totals["USD"]["cost"]) + Decimal("0.40")
    assert statement_verify(first)  # the reopened statement's lines are untouched
    assert MonthStatement.objects.filter(organization=tenancy.org, month=OCT).count() == 2


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize("role", ["owner", "viewer"])
def test_only_finance_and_admins_may_close_or_reopen(tenancy: Tenancy, role: str) -> None:
    client = client_for(getattr(tenancy, role))
    assert client.post(f"/o/{tenancy.org.slug}/review/2026-10/close/").status_code == 403
    assert client.post(f"/o/{tenancy.org.slug}/review/2026-10/reopen/", {"reason": "x"}).status_code == 403
    assert not MonthStatement.objects.exists()


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_finance_closes_and_reopens_through_the_page(tenancy: Tenancy) -> None:
    _seed(tenancy)
    client = client_for(tenancy.finance)
    response = client.post(f"/o/{tenancy.org.slug}/review/2026-10/close/", follow=True)
    assert response.status_code == 200
    html = response.content.decode()
    assert "October 2026 closed (statement v1)." in html
    assert "No data has changed since the close." in html
    response = client.post(f"/o/{tenancy.org.slug}/review/2026-10/reopen/", {"reason": ""}, follow=True)
    assert "Give a reason for reopening the month." in response.content.decode()
    assert MonthStatement.objects.get().status == StatementStatus.CLOSED
    client.post(f"/o/{tenancy.org.slug}/review/2026-10/reopen/", {"reason": "late invoice"})
    assert MonthStatement.objects.get().status == StatementStatus.REOPENED
    assert client_for(tenancy.admin).post(f"/o/{tenancy.org.slug}/review/2026-10/close/").status_code == 303


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_the_review_page_shows_the_restatement_delta_of_a_closed_month(tenancy: Tenancy) -> None:
    account, key = _seed(tenancy)
    period_close(organization=tenancy.org, month=OCT, user=tenancy.finance)
    usage_rows_upsert(
        organization=tenancy.org,
        rows=[factories.usage_row(datetime(2026, 10, 30, tzinfo=UTC), cost="0.123456", key=key.external_id)],
        account=account,
    )
    html = client_for(tenancy.viewer).get(f"/o/{tenancy.org.slug}/review/2026-10/").content.decode()
    assert "Late data since the close" in html
    assert "$0.123456" in html
