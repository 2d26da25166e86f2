"""The usage explorer page, its htmx panels and CSV exports."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse

from tests.conftest import Tenancy, client_for
from tests.usage.analytics_data import UsageData
from usage.models import UsageRecord
from usage.panels import PANELS

pytestmark = pytest.mark.django_db

PANEL_NAMES = list(PANELS)


def explorer_url(org_slug: str = "acme") -> str:
    return reverse("usage_explorer", args=[org_slug])


def csv_rows(response: Any) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def test_the_page_renders_the_filter_bar_and_lazy_panel_placeholders(usage_data: UsageData) -> None:
    response = client_for(usage_data.t.viewer).get(explorer_url())
    html = response.content.decode()
    assert response.status_code == 200
    assert (
        'hx-get="/o/acme/usage/"' in html
        and 'hx-push-url="true"' in html
        and 'hx-target="#explorer-body"' in html
    )
    for name in PANEL_NAMES:
        assert (
            f'hx-get="/o/acme/usage/?preset=30d&amp;granularity=day&amp;group_by=model&amp;panel={name}"'
            in html
        )
    assert html.count('hx-trigger="load"') == len(PANEL_NAMES)
    assert 'aria-current="page">Usage</a>' in html


@pytest.mark.parametrize("panel", PANEL_NAMES)
def test_each_panel_renders_as_a_fragment_for_htmx(usage_data: UsageData, panel: str) -> None:
    response = client_for(usage_data.t.viewer).get(
        explorer_url(), {"panel": panel, "preset": "90d"}, headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html and "<form" not in html
    assert f'id="panel-{panel}-title"' in html
    assert "empty-state" not in html


@pytest.mark.parametrize("panel", PANEL_NAMES)
def test_each_panel_shows_an_empty_state_for_an_empty_org(tenancy: Tenancy, panel: str) -> None:
    response = client_for(tenancy.viewer).get(
        explorer_url(), {"panel": panel}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert "empty-state" in response.content.decode()


@pytest.mark.parametrize("panel", PANEL_NAMES)
def test_without_javascript_a_panel_link_renders_the_full_page_with_that_panel(
    usage_data: UsageData, panel: str
) -> None:
    response = client_for(usage_data.t.viewer).get(explorer_url(), {"panel": panel})
    html = response.content.decode()
    assert "<html" in html and "<form" in html
    assert html.count('hx-trigger="load"') == len(PANEL_NAMES) - 1


def test_the_htmx_filter_submit_returns_only_the_body(usage_data: UsageData) -> None:
    response = client_for(usage_data.t.viewer).get(
        explorer_url(), {"preset": "7d", "model": "gpt-4o"}, headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert "<form" not in html and "<html" not in html
    assert "panel=spend" in html and "model=gpt-4o" in html and "preset=7d" in html


def test_a_history_restore_gets_the_full_page(usage_data: UsageData) -> None:
    response = client_for(usage_data.t.viewer).get(
        explorer_url(), headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )
    assert "<html" in response.content.decode()


def test_an_unknown_panel_is_404(usage_data: UsageData) -> None:
    client = client_for(usage_data.t.viewer)
    assert client.get(explorer_url(), {"panel": "../etc"}).status_code == 404
    assert client.get(explorer_url(), {"format": "csv"}).status_code == 404


@pytest.mark.parametrize(
    "params",
    [{}, {"panel": "spend"}, {"panel": "keys"}, {"panel": "spend", "format": "csv"}, {"panel": "requests"}],
)
def test_outsiders_get_404_on_the_page_partials_and_csv(
    usage_data: UsageData, params: dict[str, str]
) -> None:
    client = client_for(usage_data.t.outsider)
    assert client.get(explorer_url(), params).status_code == 404
    assert client.get(explorer_url(), params, headers={"HX-Request": "true"}).status_code == 404


def test_invalid_filters_fall_back_to_defaults_and_say_so(usage_data: UsageData) -> None:
    response = client_for(usage_data.t.viewer).get(
        explorer_url(), {"preset": "custom", "start": "2026-11-10", "end": "2026-11-01", "project": "nope"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "The end date is before the start date." in html
    assert "Select a valid choice" in html
    assert "panel=spend" in html and "preset=30d" in html


def test_a_custom_range_in_the_date_fields_becomes_a_custom_preset(usage_data: UsageData) -> None:
    response = client_for(usage_data.t.viewer).get(
        explorer_url(), {"preset": "30d", "start": "2026-10-25", "end": "2026-11-03"}
    )
    assert "preset=custom&amp;start=2026-10-25&amp;end=2026-11-03" in response.content.decode()


def _local_day_sums(org_tz: str, **filters: Any) -> dict[date, Decimal]:
    import zoneinfo

    tz = zoneinfo.ZoneInfo(org_tz)
    sums: dict[date, Decimal] = defaultdict(Decimal)
    for record in UsageRecord.objects.filter(**filters):
        sums[record.occurred_at.astimezone(tz).date()] += record.cost
    return sums


def test_the_spend_csv_equals_raw_records_per_local_day_and_model(usage_data: UsageData) -> None:
    response = client_for(usage_data.t.viewer).get(
        explorer_url(),
        {"panel": "spend", "format": "csv", "preset": "custom", "start": "2026-10-20", "end": "2026-11-19"},
    )
    assert response["Content-Type"].startswith("text/csv")
    rows = csv_rows(response)
    assert rows[0] == ["Period start", "Model", "Spend", "Requests"]
    got: dict[tuple[date, str], Decimal] = {(date.fromisoformat(r[0]), r[1]): Decimal(r[2]) for r in rows[1:]}
    expected: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
    import zoneinfo

    tz = zoneinfo.ZoneInfo("America/New_York")
    for record in UsageRecord.objects.filter(organization=usage_data.t.org):
        day = record.occurred_at.astimezone(tz).date()
        if date(2026, 10, 20) <= day <= date(2026, 11, 19):
            expected[(day, record.model)] += record.cost
    assert got == dict(expected)


def test_csv_neutralises_formula_cells_and_keeps_numbers_numeric(usage_data: UsageData) -> None:
    key = usage_data.loose_key
    key.name = '=HYPERLINK("http://evil")'
    key.save()
    response = client_for(usage_data.t.viewer).get(
        explorer_url(), {"panel": "keys", "format": "csv", "preset": "90d"}
    )
    body = b"".join(response.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(body)))
    names = [r[0] for r in rows[1:]]
    assert '\'=HYPERLINK("http://evil")' in names
    assert all(not n.startswith(("=", "+", "-", "@")) for n in names)
    spend_cells = [r[2] for r in rows[1:]]
    assert all(Decimal(cell) >= 0 for cell in spend_cells)


def test_the_request_log_csv_streams_every_matching_record(usage_data: UsageData) -> None:
    response = client_for(usage_data.t.viewer).get(
        explorer_url(), {"panel": "requests", "format": "csv", "preset": "90d"}
    )
    rows = csv_rows(response)
    records = UsageRecord.objects.filter(organization=usage_data.t.org)
    assert len(rows) - 1 == records.count() > 50  # more than one page: the export is not paginated
    assert sum(Decimal(r[9]) for r in rows[1:]) == sum(r.cost for r in records)


def test_the_request_log_pages_by_fifty(usage_data: UsageData) -> None:
    client = client_for(usage_data.t.viewer)
    first = client.get(explorer_url(), {"panel": "requests", "preset": "90d"}, headers={"HX-Request": "true"})
    total = UsageRecord.objects.filter(organization=usage_data.t.org).count()
    html = first.content.decode()
    assert f"Page 1 of {(total + 49) // 50}" in html
    assert html.count("<tr>") == 50 + 1


def test_past_the_count_cap_the_request_log_says_more_than_and_counts_no_further(
    usage_data: UsageData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 10M records an exact COUNT(*) of the window cost more than the page: it stops at the cap."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    monkeypatch.setattr("usage.panels.REQUEST_LOG_COUNT_CAP", 60)
    client = client_for(usage_data.t.viewer)
    params = {"panel": "requests", "preset": "90d"}
    assert UsageRecord.objects.filter(organization=usage_data.t.org).count() > 61
    with CaptureQueriesContext(connection) as ctx:
        html = client.get(explorer_url(), params, headers={"HX-Request": "true"}).content.decode()
    assert "Page 1 · more than 60 records: narrow the range or filters" in html
    [count_sql] = [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"].upper()]
    assert "LIMIT 61" in count_sql
    # Page 2 (rows 51-61 as counted) is the last one offered: the real rows 51-61, newest first.
    second = client.get(
        explorer_url(), {**params, "page": 2}, headers={"HX-Request": "true"}
    ).content.decode()
    assert "Page 2 · more than 60" in second and "Older →" not in second and second.count("<tr>") == 11 + 1


def test_the_full_page_runs_a_fixed_number_of_queries(
    usage_data: UsageData, django_assert_max_num_queries: Any
) -> None:
    client = client_for(usage_data.t.viewer)
    with django_assert_max_num_queries(12):
        client.get(explorer_url(), {"preset": "90d"})


@pytest.mark.parametrize("panel", PANEL_NAMES)
def test_each_panel_runs_a_fixed_number_of_queries(
    usage_data: UsageData, panel: str, django_assert_max_num_queries: Any
) -> None:
    client = client_for(usage_data.t.viewer)
    with django_assert_max_num_queries(10):
        client.get(
            explorer_url(),
            {"panel": panel, "preset": "90d", "project": "chat", "key": str(usage_data.chat_key.public_id)},
            headers={"HX-Request": "true"},
        )


def test_picking_a_preset_with_another_presets_dates_still_in_the_bar_uses_the_preset(
    usage_data: UsageData,
) -> None:
    # Without JavaScript the bar still holds the previous period's dates when the period is changed.
    response = client_for(usage_data.t.viewer).get(
        explorer_url(), {"preset": "7d", "start": "2026-10-22", "end": "2026-11-20"}
    )
    html = response.content.decode()
    assert "Nov 14, 2026 – Nov 20, 2026 (7 days)" in html
    assert 'value="7d" selected' in html
