"""In a real browser: an owner sets a budget, sees a validation error, fixes it, and the variance panel updates."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.utils import timezone

from billing.models import AutoRechargeRule, BalanceSnapshot
from billing.services.alerts import alerts_evaluate
from tests import factories
from tests.billing.builders import budget, spend
from tests.conftest import Tenancy

SHOTS = Path("/tmp/qb-billing")

pytestmark = pytest.mark.browser


def _session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert client.session[SESSION_KEY] == str(user.pk)
    return cookie


@pytest.mark.django_db(transaction=True)
def test_owner_sets_a_budget_fixes_a_bad_amount_and_sees_the_variance_panel_update(
    tenancy: Tenancy, live_server: Any, browser: Any
) -> None:
    today = timezone.now().astimezone(tenancy.org.zoneinfo).date()
    spend(tenancy.org, today, "12.50", project=tenancy.project)  # this month, on the owner's project
    cookie = _session_cookie(tenancy.owner)
    SHOTS.mkdir(parents=True, exist_ok=True)

    context = browser.new_context(viewport={"width": 1280, "height": 1100})
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server.url}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server.url}/o/acme/budgets/")
    assert page.locator("#budgets-panel").inner_text().count("No budgets yet.") == 1

    page.select_option("#id_budget-project", label="Chat app")
    page.fill("#id_budget-name", "Chat cap")
    page.fill("#id_budget-monthly_amount", "0")
    page.click("#budget-form button[type=submit]")
    error = page.locator("#budget-form .field-error")
    error.wait_for()
    assert error.inner_text() == "Amount must be greater than 0"
    assert page.url.endswith("/o/acme/budgets/")  # htmx swapped the form; no navigation
    page.screenshot(path=str(SHOTS / "budget-validation-error.png"), full_page=True)

    page.fill("#id_budget-monthly_amount", "50")
    page.click("#budget-form button[type=submit]")
    page.locator("#budget-form .ok").wait_for()
    row = page.locator("#variance-table tbody tr")
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[0] == "Chat cap"
    assert cells[2:6] == ["$50.00", "$12.50", "-$37.50", "-75.0%"]
    page.locator("#fig-budget-variance[data-drawn=true]").wait_for()
    page.screenshot(path=str(SHOTS / "budget-variance-updated.png"), full_page=True)
    assert errors == []
    context.close()


@pytest.mark.django_db(transaction=True)
def test_balances_planner_recharge_projection_and_alerts_render_and_the_planner_recomputes(
    tenancy: Tenancy, live_server: Any, browser: Any
) -> None:
    now = timezone.now()
    today = now.astimezone(tenancy.org.zoneinfo).date()
    account = factories.make_account(tenancy.org, "newapi", slug="lz", name="LaoZhang")
    BalanceSnapshot.objects.create(
        provider_account=account,
        taken_at=now - timedelta(minutes=5),
        remaining=Decimal("40"),
        raw_quota=20000000,
    )
    for n in range(1, 8):
        spend(tenancy.org, today - timedelta(days=n), "5", account=account, project=tenancy.project)
    AutoRechargeRule.objects.create(
        provider_account=account, threshold=Decimal("10"), amount=Decimal("20"), monthly_limit=Decimal("50")
    )
    budget(tenancy.org, "10", project=tenancy.project, name="Chat cap", thresholds=[50, 80, 100])
    alerts_evaluate(organization=tenancy.org)
    cookie = _session_cookie(tenancy.admin)
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server.url}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(f"{live_server.url}/o/acme/balances/")
    assert "$40.00" in page.locator("table").first.inner_text()
    page.screenshot(path=str(SHOTS / "balances-list.png"), full_page=True)

    page.goto(f"{live_server.url}/o/acme/balances/lz/")
    page.locator("#fig-balance-history[data-drawn=true]").wait_for()
    # 5/day x 30 x 1.5 (production project) = 225; no minimum or expiry for a gateway.
    assert page.locator("#topup-planner .plan-amount").inner_text() == "$225.00"
    assert page.locator("#recharge-projection tbody tr").count() >= 1
    page.screenshot(path=str(SHOTS / "balance-detail.png"), full_page=True)
    page.fill("#id_plan-days", "10")
    page.fill("#id_plan-factor", "1.2")
    page.click("#topup-planner button[type=submit]")
    page.wait_for_url("**plan-days=10**")
    assert page.locator("#topup-planner .plan-amount").inner_text() == "$60.00"  # 5 x 10 x 1.2

    page.goto(f"{live_server.url}/o/acme/alerts/")
    assert page.get_by_text("Chat cap").count() >= 1
    page.screenshot(path=str(SHOTS / "alerts.png"), full_page=True)
    assert errors == []
    context.close()
