"""Browser check of the usage explorer (headless chromium): filters update the panels over htmx without a
full page load and push the URL, a project drill-down opens, and a panel's CSV downloads."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from projects.models import Role
from tests import factories
from tests.test_browser_overview import SCREENSHOTS
from usage.services import usage_rows_upsert

A11Y_CHECK = (Path(__file__).parent / "a11y_check.js").read_text()

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def seed() -> None:
    org = factories.make_org("Acme AI", slug="acme-ai", timezone="America/New_York")
    factories.make_member(org, Role.ADMIN, factories.make_user("demo-admin"))
    account = factories.make_account(org, "newapi", name="Reseller")
    support = factories.make_project(org, "Support bot", slug="support-bot")
    search = factories.make_project(org, "Search", slug="search")
    keys = {
        support: factories.make_key(org, project=support, account=account, name="support"),
        search: factories.make_key(org, project=search, account=account, name="search"),
    }
    now = timezone.now()
    rows = [
        factories.usage_row(
            now - timedelta(days=day, hours=2),
            model=model,
            key=keys[project].external_id,
            cost=cost,
            input_tokens=1200,
            cache_read_tokens=300,
            output_tokens=400,
            requests=5,
        )
        for day in range(40)
        for project, model, cost in ((support, "gpt-4o", "1.25"), (search, "claude-sonnet-4-5", "0.75"))
    ]
    usage_rows_upsert(organization=org, rows=rows, account=account)


def sign_in(page, base: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base}/login/")
    page.fill("#id_username", "demo-admin")
    page.fill("#id_password", "pw-demo-admin")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/o/acme-ai/")


def test_filters_update_charts_in_place_push_the_url_and_csv_downloads(page, live_server) -> None:  # type: ignore[no-untyped-def]
    seed()
    base = live_server.url
    sign_in(page, base)
    page.goto(f"{base}/o/acme-ai/usage/")
    page.wait_for_selector("#panel-spend [data-drawn=true] .main-svg", timeout=15000)
    page.wait_for_selector("#panel-peaks [data-drawn=true] .main-svg", timeout=15000)
    # A full page load would drop this marker.
    page.evaluate("window.qbMarker = 'still-here'")

    page.select_option("#id_group_by", "project")
    page.select_option("#id_preset", "7d")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/o/acme-ai/usage/?*group_by=project*", timeout=15000)
    assert "preset=7d" in page.url
    page.wait_for_selector("#panel-spend [data-drawn=true] .main-svg", timeout=15000)
    assert page.evaluate("window.qbMarker") == "still-here"
    legend = page.locator("#panel-spend .legend").first.text_content() or ""
    assert "Support bot" in legend and "Search" in legend
    page.wait_for_selector("#panel-keys table", timeout=15000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "explorer.png"), full_page=True)
    assert page.evaluate(A11Y_CHECK) == []

    # The pushed URL is shareable: loading it afresh keeps the filters.
    page.reload()
    assert page.input_value("#id_group_by") == "project"
    assert page.input_value("#id_preset") == "7d"

    page.click("nav >> text=Projects")
    page.click("main >> a:has-text('Support bot')")
    page.wait_for_url(f"{base}/o/acme-ai/projects/support-bot/**")
    page.wait_for_selector("#panel-spend [data-drawn=true] .main-svg", timeout=15000)
    page.wait_for_selector("#panel-keys table", timeout=15000)
    assert "Support bot" in page.inner_text("h1")
    page.screenshot(path=str(SCREENSHOTS / "project-drilldown.png"), full_page=True)
    assert page.evaluate(A11Y_CHECK) == []

    with page.expect_download() as info:
        page.click("#panel-spend a:has-text('CSV')")
    download = info.value
    body = Path(download.path()).read_text()
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == ["Period start", "Model", "Spend", "Requests"]
    assert rows[1:] and {row[1] for row in rows[1:]} == {"gpt-4o"}
    assert download.suggested_filename.startswith("acme-ai-spend-")

    # A phone-sized viewport: no horizontal scrolling of the page itself.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{base}/o/acme-ai/usage/")
    page.wait_for_selector("#panel-spend [data-drawn=true] .main-svg", timeout=15000)
    page.wait_for_selector("#panel-requests table", timeout=15000)
    page.screenshot(path=str(SCREENSHOTS / "explorer-390.png"), full_page=True)
    for name in ("spend", "models", "keys", "requests"):
        page.locator(f"#panel-{name}").screenshot(path=str(SCREENSHOTS / f"explorer-390-{name}.png"))
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.evaluate(A11Y_CHECK) == []
