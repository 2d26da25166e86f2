"""Browser check: finance opens last month's review, closes it, and downloads both CSVs (headless chromium)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone

from billing import rules
from billing.models import BalanceSnapshot, Budget, MonthStatement, StatementStatus, TopUp, TopUpStatus
from projects.models import Role
from tests import factories
from usage.services import local_day_bounds, usage_rows_upsert

SCREENSHOT = Path("/tmp/qb-finance/review.png")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_finance_reviews_closes_and_exports_last_month(page, live_server) -> None:  # type: ignore[no-untyped-def]
    org = factories.make_org("Acme AI", slug="acme-ai", timezone="America/New_York")
    user = factories.make_user("demo-finance")
    factories.make_member(org, Role.FINANCE, user)
    support = factories.make_project(org, "Support bot", slug="support-bot")
    batch = factories.make_project(org, "=Batch jobs", slug="batch")
    gateway = factories.make_account(org, "newapi", name="LaoZhang API")
    support_key = factories.make_key(org, project=support, account=gateway, name="support")
    batch_key = factories.make_key(org, project=batch, account=gateway, name="batch")
    tz = org.zoneinfo
    today = timezone.now().astimezone(tz).date()
    last_month = rules.add_months(today, -1)
    month_start, month_end = local_day_bounds(last_month, rules.month_bounds(last_month)[1], tz)
    rows = []
    for day in range(20):
        at = month_start + timedelta(days=day, hours=14)
        rows.append(
            factories.usage_row(
                at, cost="1.25", key=support_key.external_id, input_tokens=4000, output_tokens=800
            )
        )
        rows.append(
            factories.usage_row(
                at,
                model="claude-sonnet-4-5",
                cost="0.75",
                key=batch_key.external_id,
                input_tokens=9000,
                output_tokens=300,
                cache_read_tokens=3000,
            )
        )
    usage_rows_upsert(organization=org, rows=rows, account=gateway)
    Budget.objects.create(organization=org, project=support, monthly_amount=Decimal("20.00"))
    BalanceSnapshot.objects.create(
        provider_account=gateway, taken_at=month_start, remaining=Decimal("100.00")
    )
    BalanceSnapshot.objects.create(provider_account=gateway, taken_at=month_end, remaining=Decimal("90.00"))
    TopUp.objects.create(
        provider_account=gateway,
        amount=Decimal("30"),
        status=TopUpStatus.CREDITED,
        created_at=month_start + timedelta(days=3),
        credited_at=month_start + timedelta(days=3),
        order_ref="ORD-7",
    )

    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "demo-finance")
    page.fill("#id_password", "pw-demo-finance")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/o/acme-ai/")
    page.click("nav >> text=Month review")
    page.wait_for_selector("h1:has-text('Month review')")
    page.wait_for_selector("[data-drawn=true] .main-svg", timeout=15000)
    body = page.inner_text("main")
    assert "$40.00" in body  # 20 days x (1.25 + 0.75)
    assert "Reconciles" in body  # 100 + 30 - 40 = 90

    page.click("button:has-text('Close ')")
    page.wait_for_selector("text=closed (statement v1)")
    statement = MonthStatement.objects.get(organization=org)
    assert statement.status == StatementStatus.CLOSED
    assert statement.totals["USD"]["cost_rounded"] == "40.00"

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    with page.expect_download() as usage_info:
        page.click("a:has-text('Usage CSV')")
    usage_csv = Path(usage_info.value.path()).read_text()
    usage = list(csv.DictReader(io.StringIO(usage_csv, newline="")))
    assert sum((Decimal(r["cost"]) for r in usage), Decimal(0)) == Decimal("40.00")
    assert {r["project"] for r in usage} == {"Support bot", "'=Batch jobs"}

    with page.expect_download() as focus_info:
        page.click("a:has-text('FOCUS CSV')")
    assert focus_info.value.suggested_filename == f"acme-ai-focus-{last_month:%Y-%m}.csv"
    focus = list(csv.DictReader(io.StringIO(Path(focus_info.value.path()).read_text(), newline="")))
    assert sum(
        (Decimal(r["EffectiveCost"]) for r in focus if r["ChargeCategory"] == "Usage"), Decimal(0)
    ) == Decimal("40.00")
    assert [r["BilledCost"] for r in focus if r["ChargeCategory"] == "Purchase"] == ["30.00"]
