"""Every analytics panel renders for an organization without data, and "no data" is not shown as zero."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from tests import factories
from tests.conftest import Tenancy, client_for
from usage.panels import PANELS
from usage.services import usage_rows_upsert

pytestmark = pytest.mark.django_db


def empty_org_urls(t: Tenancy) -> list[str]:
    key = factories.make_key(t.org, project=t.project, name="idle")
    return [
        reverse("usage_explorer", args=["acme"]),
        reverse("project_detail", args=["acme", "chat"]),
        reverse("key_detail", args=["acme", key.public_id]),
    ]


@pytest.mark.parametrize("panel", list(PANELS))
def test_every_panel_of_every_analytics_page_shows_no_data_for_an_empty_org(
    tenancy: Tenancy, panel: str
) -> None:
    client = client_for(tenancy.viewer)
    for url in empty_org_urls(tenancy):
        # Without JavaScript: the full page with the panel inlined.
        page = client.get(url, {"panel": panel})
        html = page.content.decode()
        assert page.status_code == 200, url
        assert f'id="panel-{panel}-title"' in html
        assert html.count('class="empty-state"') == 1, url
        assert "$0.00" not in html, url
        # With htmx: only the panel.
        fragment = client.get(url, {"panel": panel}, headers={"HX-Request": "true"}).content.decode()
        assert "<html" not in fragment
        assert 'class="empty-state"' in fragment and "$0.00" not in fragment


def test_the_pages_and_lists_render_for_an_empty_org(tenancy: Tenancy) -> None:
    client = client_for(tenancy.viewer)
    for url in [
        *empty_org_urls(tenancy),
        reverse("overview", args=["acme"]),
        reverse("project_list", args=["acme"]),
        reverse("key_list", args=["acme"]),
        reverse("data_sources", args=["acme"]),
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
        assert "Traceback" not in response.content.decode()


def test_free_requests_show_zero_spend_not_no_data(tenancy: Tenancy) -> None:
    account = factories.make_account(tenancy.org, "newapi")
    key = factories.make_key(tenancy.org, project=tenancy.project, account=account, name="free")
    when = datetime.now(UTC).replace(microsecond=0)
    usage_rows_upsert(
        organization=tenancy.org,
        rows=[factories.usage_row(when, key=key.external_id, cost="0", input_tokens=10, requests=3)],
        account=account,
    )
    client = client_for(tenancy.viewer)
    for url in (reverse("usage_explorer", args=["acme"]), reverse("project_detail", args=["acme", "chat"])):
        html = client.get(url, {"panel": "spend"}, headers={"HX-Request": "true"}).content.decode()
        assert "empty-state" not in html
        assert "<strong>$0.00</strong>" in html
        assert "3 requests" in html
