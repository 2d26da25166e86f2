"""Balances, top-ups and alerts pages: numbers shown, roles, empty states, query counts, outsiders."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from billing.models import AlertEvent, AlertPolicy, AutoRechargeRule, BalanceSnapshot, SnapshotSource, TopUp
from billing.services.ledger import topup_record
from tests import factories
from tests.billing.builders import spend
from tests.conftest import Tenancy, client_for

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["balance_list", "topup_list", "alert_list"])
def test_empty_pages_say_so(tenancy: Tenancy, name: str) -> None:
    html = client_for(tenancy.viewer).get(reverse(name, args=["acme"])).content.decode()
    assert any(
        text in html for text in ["No provider accounts yet.", "No top-ups recorded.", "No alerts yet."]
    )


def _gateway(t: Tenancy) -> Any:
    account = factories.make_account(t.org, "newapi", slug="lz", name="LaoZhang")
    BalanceSnapshot.objects.create(
        provider_account=account,
        taken_at=NOW - timedelta(hours=1),
        remaining=D("49.995818"),
        raw_quota=24997909,
    )
    for day in range(13, 20):
        spend(t.org, date(2026, 11, day), "5", account=account, project=t.project)
    return account


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_balance_list_shows_runway_run_out_date_and_suggested_topup(tenancy: Tenancy) -> None:
    _gateway(tenancy)
    html = client_for(tenancy.viewer).get(reverse("balance_list", args=["acme"])).content.decode()
    assert "$50.00" in html  # 49.995818 shown rounded once
    assert "25.0M quota" in html
    assert "$5.00/day" in html
    assert "10.0 days" in html  # 49.995818 / 5 = 9.9991636
    assert "Nov 29, 2026" in html
    assert "$225.00" in html  # 5 x 30 x 1.5 (production project)
    assert "\u00d7 1.5 (production)" in html


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_balance_pages_keep_a_fixed_query_count(tenancy: Tenancy, django_assert_max_num_queries: Any) -> None:
    for _ in range(4):
        _ = factories.make_account(tenancy.org, "openai")
    account = _gateway(tenancy)
    client = client_for(tenancy.viewer)
    with django_assert_max_num_queries(12):
        assert client.get(reverse("balance_list", args=["acme"])).status_code == 200
    with django_assert_max_num_queries(16):
        assert client.get(reverse("balance_detail", args=["acme", account.slug])).status_code == 200
    with django_assert_max_num_queries(14):
        assert client.get(reverse("topup_list", args=["acme"])).status_code == 200


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_balance_detail_has_a_history_chart_with_raw_quota(tenancy: Tenancy) -> None:
    account = _gateway(tenancy)
    html = (
        client_for(tenancy.viewer)
        .get(reverse("balance_detail", args=["acme", account.slug]))
        .content.decode()
    )
    assert 'data-figure="fig-balance-history-data"' in html
    assert '"name": "Raw quota"' in html
    assert "24,997,909 quota" in html


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_finance_records_a_console_balance_and_viewers_cannot(tenancy: Tenancy) -> None:
    account = factories.make_account(tenancy.org, "anthropic", slug="ant")
    url = reverse("balance_detail", args=["acme", "ant"])
    data = {"action": "console", "console-remaining": "123.4567", "console-taken_at": ""}
    assert client_for(tenancy.viewer).post(url, data).status_code == 403
    assert client_for(tenancy.finance).post(url, data).status_code == 302
    snapshot = BalanceSnapshot.objects.get(provider_account=account)
    assert (snapshot.remaining, snapshot.source, snapshot.taken_at) == (
        D("123.4567"),
        SnapshotSource.MANUAL,
        NOW,
    )


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_admin_sets_an_auto_recharge_rule_and_sees_the_months_allowance(tenancy: Tenancy) -> None:
    account = _gateway(tenancy)
    url = reverse("balance_detail", args=["acme", account.slug])
    data = {
        "action": "rule",
        "rule-enabled": "on",
        "rule-threshold": "10",
        "rule-amount": "20",
        "rule-monthly_limit": "50",
    }
    assert client_for(tenancy.finance).post(url, data).status_code == 403
    assert client_for(tenancy.admin).post(url, data).status_code == 302
    rule = AutoRechargeRule.objects.get()
    assert (rule.threshold, rule.amount, rule.monthly_limit) == (D("10"), D("20"), D("50"))
    topup_record(account=account, amount=D("20"), created_at=NOW - timedelta(days=3), is_auto_recharge=True)
    topup_record(account=account, amount=D("100"), created_at=NOW - timedelta(days=2), order_ref="manual")
    html = client_for(tenancy.viewer).get(url).content.decode()
    assert "$20.00 auto-recharged, $30.00 allowance left" in html
    # 49.995818 at 5/day for the 10 days left: drops below 10 on day 8 -> +20, then day 12 is past month end.
    # Next 30 days at 5/day from 49.995818, 30 of the 50 left this month: under 10 on Nov 28 -> +20.
    # December starts a fresh 50: +20 on Dec 2 and Dec 6, then only the 10 remaining on Dec 10; the
    # balance hits zero on Dec 13 and calls fail from Dec 14 (30.004182 of spend refused by Dec 20).
    assert "November 2026 cash-out: <strong>$20.00</strong>" in html
    assert (
        'December 2026 cash-out: <strong>$50.00</strong> <span class="warn">(monthly limit reached)' in html
    )
    assert "<td>Nov 28</td>" in html and "<td>Dec 10</td>" in html
    assert '$10.00 <span class="muted small">(limit: $20.00 requested)</span>' in html
    assert "Calls would start failing around Dec 14: about $30.00 of spend" in html


def _openai_with_credit(t: Tenancy) -> Any:
    account = factories.make_account(t.org, "openai", slug="oa", name="OpenAI")
    topup_record(
        account=account, amount=D("700"), created_at=datetime(2026, 11, 1, tzinfo=UTC), order_ref="inv-1"
    )
    for day in range(13, 20):
        spend(t.org, date(2026, 11, day), "2", account=account, project=t.project)
    return account


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_planner_caps_the_suggestion_at_what_can_be_spent_before_expiry(tenancy: Tenancy) -> None:
    account = _openai_with_credit(tenancy)
    url = reverse("balance_detail", args=["acme", account.slug])
    html = client_for(tenancy.viewer).get(url).content.decode()
    assert "minimum purchase $5.00 · credit expires 365 days after purchase" in html
    # 2/day x 30 x 1.5 = 90, but 2 x 365 - 686 (700 credited - 14 billed, spent first) = 44 can be used.
    assert '<strong class="plan-amount">$44.00</strong>' in html
    assert "= $2.00/day × 30 days × 1.5 = $90.00, cut to the $44.00 that can be spent" in html


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_planner_days_and_safety_factor_are_editable_and_validated(tenancy: Tenancy) -> None:
    account = _openai_with_credit(tenancy)
    url = reverse("balance_detail", args=["acme", account.slug])
    client = client_for(tenancy.viewer)
    html = client.get(url, {"plan-days": "10", "plan-factor": "1.2"}).content.decode()
    assert '<strong class="plan-amount">$24.00</strong>' in html  # 2 x 10 x 1.2
    small = client.get(url, {"plan-days": "1", "plan-factor": "1"}).content.decode()
    assert '<strong class="plan-amount">$5.00</strong>' in small  # 2.00 raised to the $5 minimum
    assert "raised to the minimum purchase" in small
    bad = client.get(url, {"plan-days": "0", "plan-factor": "9"}).content.decode()
    assert "Cover at least 1 day" in bad
    assert "A safety factor above 5 is not a buffer" in bad
    assert "plan-amount" not in bad


@pytest.mark.django_db
def test_topup_create_by_finance_with_openai_expiry(tenancy: Tenancy) -> None:
    account = factories.make_account(tenancy.org, "openai")
    data = {
        "topup-account": account.pk,
        "topup-amount": "10.00",
        "topup-bonus": "",
        "topup-currency": "",
        "topup-status": "credited",
        "topup-kind": "paid",
        "topup-order_ref": "inv-42",
        "topup-payment_method": "card",
        "topup-purchased_on": "2026-11-02",
        "topup-expires_on": "",
        "topup-note": "",
    }
    url = reverse("topup_create", args=["acme"])
    assert client_for(tenancy.viewer).post(url, data).status_code == 403
    assert client_for(tenancy.owner).post(url, data).status_code == 403
    assert client_for(tenancy.finance).post(url, data).status_code == 302
    topup = TopUp.objects.get()
    assert (topup.amount, topup.expires_at) == (D("10"), datetime(2027, 11, 2, tzinfo=UTC))
    again = client_for(tenancy.finance).post(url, data)
    assert "already has a top-up with this order number" in again.content.decode()
    bad = client_for(tenancy.finance).post(url, {**data, "topup-amount": "0", "topup-order_ref": "y"})
    assert "Amount must be greater than 0" in bad.content.decode()
    assert TopUp.objects.count() == 1


@pytest.mark.django_db
def test_topup_create_cannot_use_another_organizations_account(tenancy: Tenancy) -> None:
    factories.make_account(tenancy.org, "openai")
    foreign = factories.make_account(tenancy.other_org, "openai")
    data = {
        "topup-account": foreign.pk,
        "topup-amount": "10",
        "topup-status": "credited",
        "topup-kind": "paid",
    }
    data["topup-purchased_on"] = "2026-11-02"
    html = client_for(tenancy.admin).post(reverse("topup_create", args=["acme"]), data).content.decode()
    assert "Select a valid choice" in html
    assert not TopUp.objects.exists()


@pytest.mark.django_db
def test_topup_import_page_reports_line_numbers(tenancy: Tenancy) -> None:
    factories.make_account(tenancy.org, "deepseek", slug="ds")
    text = b"account,amount,order_ref,created_at\nds,10,a,2026-10-01\nds,x,b,2026-10-01\n"
    upload = SimpleUploadedFile("topups.csv", text, content_type="text/csv")
    response = client_for(tenancy.finance).post(reverse("topup_import", args=["acme"]), {"file": upload})
    html = response.content.decode()
    assert "1 imported · 0 already present · 1 with errors" in html
    assert '<td class="num">3</td><td>amount &#x27;x&#x27; is not a number</td>' in html


@pytest.mark.django_db
@time_machine.travel(datetime(2026, 12, 20, 12, tzinfo=UTC), tick=False)
def test_topup_list_warns_about_expiring_and_wasted_credit(tenancy: Tenancy) -> None:
    account = factories.make_account(tenancy.org, "openai", name="OpenAI prod")
    topup_record(
        account=account, amount=D("30"), created_at=datetime(2026, 1, 5, tzinfo=UTC), order_ref="soon"
    )
    topup_record(
        account=account,
        amount=D("8"),
        is_grant=True,
        created_at=datetime(2026, 6, 1, tzinfo=UTC),
        expires_at=datetime(2026, 9, 1, tzinfo=UTC),
        order_ref="promo",
    )
    html = client_for(tenancy.viewer).get(reverse("topup_list", args=["acme"])).content.decode()
    assert "OpenAI prod: $30.00 of soon expires on Jan 5, 2027 (within 30 days)." in html
    assert "OpenAI prod: $8.00 of credit expired unused." in html


@pytest.mark.django_db
def test_alert_acknowledge_by_owner_not_viewer_and_htmx_returns_the_row(tenancy: Tenancy) -> None:
    alert = AlertEvent.objects.create(
        organization=tenancy.org, kind="stale_data", period="2026-11-20", title="No data", message="m"
    )
    url = reverse("alert_ack", args=["acme", alert.public_id])
    assert client_for(tenancy.viewer).post(url).status_code == 403
    response = client_for(tenancy.owner).post(url, headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith("<tr") and "Acknowledged by owner" in html
    alert.refresh_from_db()
    assert alert.acknowledged_by == tenancy.owner
    client_for(tenancy.admin).post(url)
    alert.refresh_from_db()
    assert alert.acknowledged_by == tenancy.owner  # the first acknowledgement stays


@pytest.mark.django_db
def test_alert_list_filters_open_alerts_and_outsiders_cannot_ack(
    tenancy: Tenancy, django_assert_max_num_queries: Any
) -> None:
    for n in range(5):
        AlertEvent.objects.create(
            organization=tenancy.org,
            kind="stale_data",
            period=f"2026-11-{n + 10}",
            title=f"alert {n}",
            message="m",
        )
    done = AlertEvent.objects.create(
        organization=tenancy.org, kind="stale_data", period="2026-11-01", title="handled one", message="m"
    )
    client_for(tenancy.admin).post(reverse("alert_ack", args=["acme", done.public_id]))
    client = client_for(tenancy.viewer)
    with django_assert_max_num_queries(8):
        html = client.get(reverse("alert_list", args=["acme"]) + "?open=1").content.decode()
    assert "alert 4" in html and "handled one" not in html
    outsider = client_for(tenancy.outsider)
    assert outsider.post(reverse("alert_ack", args=["globex", done.public_id])).status_code == 404


@pytest.mark.django_db
def test_admin_changes_alert_settings_others_cannot_and_bad_values_are_explained(tenancy: Tenancy) -> None:
    url = reverse("alert_list", args=["acme"])
    data = {
        "policy-anomaly_factor": "4",
        "policy-anomaly_min_amount": "2",
        "policy-stale_after_hours": "12",
        "policy-webhook_url": "https://hooks.acme.test/qb",
        "policy-recipients": "ops@acme.test",
    }
    for role in ("viewer", "finance", "owner"):
        assert client_for(getattr(tenancy, role)).post(url, data).status_code == 403
    assert client_for(tenancy.outsider).post(url, data).status_code == 404
    bad = client_for(tenancy.admin).post(
        url, {**data, "policy-anomaly_factor": "1", "policy-recipients": "not-an-address"}
    )
    html = bad.content.decode()
    assert "A spike must be more than 1 times the average" in html
    assert "Not an e-mail address: not-an-address" in html
    # A new webhook URL answers with the page and its signing secret, once; saving again redirects.
    first = client_for(tenancy.admin).post(url, data)
    assert first.status_code == 200 and "Copy this signing secret now" in first.content.decode()
    assert client_for(tenancy.admin).post(url, data).status_code == 302
    policy = AlertPolicy.objects.get(organization=tenancy.org)
    assert (policy.anomaly_factor, policy.anomaly_min_amount) == (D("4"), D("2"))
    assert (policy.stale_after_hours, policy.recipients) == (12, "ops@acme.test")
    viewer_html = client_for(tenancy.viewer).get(url).content.decode()
    assert "Spend spike above 4× the 14-day average · stale after 12 h" in viewer_html
    assert 'name="policy-anomaly_factor"' not in viewer_html
