"""Browser check: sign in through the login form and see the overview with a drawn chart (headless chromium)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from billing.models import BalanceSnapshot
from projects.models import Role
from tests import factories
from usage.services import usage_rows_upsert

SCREENSHOTS = Path(settings.VAR_DIR) / "screenshots"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_signing_in_shows_the_overview_with_a_drawn_chart(page, live_server) -> None:  # type: ignore[no-untyped-def]
    org = factories.make_org("Acme AI", slug="acme-ai", timezone="America/New_York")
    user = factories.make_user("demo-admin")
    factories.make_member(org, Role.ADMIN, user)
    project = factories.make_project(org, "Support bot", slug="support-bot")
    account = factories.make_account(org, "newapi", name="Reseller")
    factories.make_key(org, project=project, account=account, name="support")
    now = timezone.now()
    rows = [
        factories.usage_row(now - timedelta(days=day, hours=1), model=model, cost=cost)
        for day in range(30)
        for model, cost in (("gpt-4o", "1.25"), ("claude-sonnet-4-5", "0.75"))
    ]
    usage_rows_upsert(organization=org, rows=rows, account=account)
    BalanceSnapshot.objects.create(
        provider_account=account,
        taken_at=now,
        raw_quota=24997909,
        remaining=Decimal("49.995818"),
        currency="USD",
    )

    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "demo-admin")
    page.fill("#id_password", "pw-demo-admin")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/o/acme-ai/")
    page.wait_for_selector("[data-drawn=true] .main-svg", timeout=15000)

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "overview.png"), full_page=True)
    body = page.inner_text("main")
    assert "$50.00" in body  # the gateway balance, 24,997,909 quota
    # 30 days x (1.25 + 0.75) = $60.00 over the last 30 days.
    assert "$60.00" in body
    assert page.locator(".chart .bars path").count() > 0 or page.locator(".chart .trace").count() > 0


def test_the_seeded_demo_signs_in_with_the_printed_login_and_draws_its_charts(page, live_server) -> None:  # type: ignore[no-untyped-def]
    """What `make demo` shows: seed_demo (a short history, through the real connectors and the simulator)."""
    from io import StringIO

    from django.core.management import call_command

    from billing.management.commands.demo import DEMO_ORG_SLUG
    from usage.models import UsageRecord

    out = StringIO()
    call_command("seed_demo", days=4, stdout=out)
    assert "Seeded Acme AI" in out.getvalue()
    assert UsageRecord.objects.filter(organization__slug=DEMO_ORG_SLUG).count() > 5000

    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "quotaboard-demo")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/o/{DEMO_ORG_SLUG}/")
    page.wait_for_selector("[data-drawn=true] .main-svg", timeout=20000)
    assert page.locator(".chart .bars path").count() > 0
    body = page.inner_text("main")
    for account in ("LaoZhang-style reseller (New API)", "OpenAI organization", "Anthropic organization"):
        assert account in body
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "demo-overview.png"), full_page=True)
