"""In a real browser: an admin sets one account's low-balance thresholds (fixing a bad value), and
copies a budget's webhook signing secret, which is gone after a reload and replaced on rotation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from billing.models import Budget
from projects.models import ProviderAccount
from tests import factories
from tests.billing.builders import budget
from tests.billing.test_browser_budget import _session_cookie
from tests.conftest import Tenancy

SHOTS = Path("/tmp/qb-billing")

pytestmark = pytest.mark.browser


@pytest.mark.django_db(transaction=True)
def test_admin_sets_account_thresholds_and_copies_a_webhook_secret_shown_once(
    tenancy: Tenancy, live_server: Any, browser: Any
) -> None:
    factories.make_account(tenancy.org, "newapi", slug="lz", name="LaoZhang")
    b = budget(tenancy.org, "100", project=tenancy.project, name="Chat cap")
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": _session_cookie(tenancy.admin),
                "url": live_server.url,
            }
        ]
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())  # the rotate button's hx-confirm

    page.goto(f"{live_server.url}/o/acme/balances/lz/")
    page.fill("#id_low-low_balance_runway_days", "0")
    page.click("#low-balance-card button[type=submit]")
    error = page.locator("#low-balance-card .field-error")
    error.wait_for()
    assert error.inner_text() == "Use at least 1 day of runway"
    page.fill("#id_low-low_balance_runway_days", "10")
    page.fill("#id_low-low_balance_amount", "25")
    page.click("#low-balance-card button[type=submit]")
    page.locator("#low-balance-card .ok").wait_for()
    assert page.locator("[data-testid=low-balance-rule]").inner_text() == (
        "Alerts (once a day) when LaoZhang has under 10 days of runway or under $25.00."
    )
    assert page.url.endswith("/o/acme/balances/lz/")  # swapped in place
    page.screenshot(path=str(SHOTS / "low-balance-thresholds.png"), full_page=True)
    account = ProviderAccount.objects.get(slug="lz")
    assert (account.low_balance_runway_days, str(account.low_balance_amount.normalize())) == (10, "25")  # type: ignore[union-attr]

    page.goto(f"{live_server.url}/o/acme/budgets/{b.public_id}/")
    page.fill("#id_budget-webhook_url", "https://hooks.acme.test/quotaboard")
    page.click("#budget-edit form button[type=submit]")
    shown = page.locator("[data-testid=webhook-secret]")
    shown.wait_for()
    secret = shown.inner_text()
    assert secret.startswith("qbwh_") and secret == Budget.objects.get(pk=b.pk).webhook_secret()
    page.click("button[data-copy]")
    page.get_by_text("Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    page.screenshot(path=str(SHOTS / "webhook-secret-revealed.png"), full_page=True)

    page.reload()
    assert secret not in page.content()
    assert page.locator("[data-testid=webhook-secret-hint]").inner_text() == f"qbwh_…{secret[-4:]}"

    page.click("text=Rotate signing secret")
    rotated = page.locator("[data-testid=webhook-secret]")
    rotated.wait_for()
    assert rotated.inner_text() not in {"", secret}
    assert rotated.inner_text() == Budget.objects.get(pk=b.pk).webhook_secret()
    page.screenshot(path=str(SHOTS / "webhook-secret-rotated.png"), full_page=True)
    assert errors == []
    context.close()
