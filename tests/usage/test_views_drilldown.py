"""Project and key drill-downs and the project and key lists."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse

from tests import factories
from tests.conftest import Tenancy, client_for
from tests.usage.analytics_data import UsageData
from usage.models import UsageRecord
from usage.panels import PANELS

pytestmark = pytest.mark.django_db


def project_url(slug: str = "chat") -> str:
    return reverse("project_detail", args=["acme", slug])


def key_url(data: UsageData) -> str:
    return reverse("key_detail", args=["acme", data.chat_key.public_id])


def csv_of(response: Any) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_project_page_hides_the_project_filter_and_loads_pre_filtered_panels(
    usage_data: UsageData,
) -> None:
    response = client_for(usage_data.t.viewer).get(project_url())
    html = response.content.decode()
    assert response.status_code == 200
    assert "<h1>Chat app</h1>" in html
    assert 'name="project"' not in html and 'name="environment"' not in html
    assert 'hx-get="/o/acme/projects/chat/?preset=30d' in html
    assert 'aria-current="page">Projects</a>' in html


def test_the_project_spend_csv_counts_only_that_projects_records(usage_data: UsageData) -> None:
    response = client_for(usage_data.t.viewer).get(
        project_url(), {"panel": "spend", "format": "csv", "preset": "90d", "group_by": "project"}
    )
    rows = csv_of(response)
    assert {r[1] for r in rows[1:]} == {"Chat app"}
    expected = sum(
        (
            r.cost
            for r in UsageRecord.objects.filter(organization=usage_data.t.org, project=usage_data.t.project)
        ),
        Decimal(0),
    )
    assert sum(Decimal(r[2]) for r in rows[1:]) == expected > 0


def test_a_project_filter_in_the_query_cannot_widen_the_project_page(usage_data: UsageData) -> None:
    response = client_for(usage_data.t.viewer).get(
        project_url(), {"panel": "keys", "format": "csv", "preset": "90d", "project": "batch"}
    )
    names = {r[0] for r in csv_of(response)[1:]}
    assert usage_data.batch_key.name not in names
    assert usage_data.chat_key.name in names


def test_the_key_page_shows_the_key_and_its_requests_only(usage_data: UsageData) -> None:
    client = client_for(usage_data.t.viewer)
    page = client.get(key_url(usage_data)).content.decode()
    assert f"<h1>{usage_data.chat_key.name}</h1>" in page and "project Chat app" in page
    rows = csv_of(client.get(key_url(usage_data), {"panel": "requests", "format": "csv", "preset": "90d"}))
    expected = UsageRecord.objects.filter(organization=usage_data.t.org, api_key=usage_data.chat_key)
    assert len(rows) - 1 == expected.count()
    assert {r[2] for r in rows[1:]} == {usage_data.chat_key.name}


@pytest.mark.parametrize("panel", list(PANELS))
def test_every_drill_down_panel_renders_as_a_fragment(usage_data: UsageData, panel: str) -> None:
    client = client_for(usage_data.t.viewer)
    for url in (project_url(), key_url(usage_data)):
        response = client.get(url, {"panel": panel, "preset": "90d"}, headers={"HX-Request": "true"})
        assert response.status_code == 200
        assert "<html" not in response.content.decode()


def test_an_empty_project_page_shows_empty_states(tenancy: Tenancy) -> None:
    response = client_for(tenancy.viewer).get(
        reverse("project_detail", args=["acme", "chat"]), {"panel": "spend"}, headers={"HX-Request": "true"}
    )
    assert "empty-state" in response.content.decode()


def test_the_project_list_shows_spend_per_project_and_no_data_for_quiet_projects(
    usage_data: UsageData,
) -> None:
    factories.make_project(usage_data.t.org, "Quiet", slug="quiet")
    response = client_for(usage_data.t.viewer).get(reverse("project_list", args=["acme"]), {"preset": "90d"})
    html = response.content.decode()
    cost: dict[str, Decimal] = defaultdict(Decimal)
    for r in UsageRecord.objects.filter(organization=usage_data.t.org).select_related("project"):
        cost[r.project.name if r.project else "Unassigned"] += r.cost
    from projects.money import format_money

    for amount in cost.values():
        assert format_money(amount, "USD") in html
    assert "no data" in html
    assert 'href="/o/acme/projects/chat/?preset=90d' in html


def test_the_key_list_flags_unassigned_keys_and_links_to_key_pages(usage_data: UsageData) -> None:
    response = client_for(usage_data.t.viewer).get(reverse("key_list", args=["acme"]), {"preset": "90d"})
    html = response.content.decode()
    assert f"/o/acme/keys/{usage_data.loose_key.public_id}/" in html
    assert "Unassigned" in html


def test_the_lists_return_only_their_body_to_htmx(usage_data: UsageData) -> None:
    client = client_for(usage_data.t.viewer)
    for name in ("project_list", "key_list"):
        html = client.get(reverse(name, args=["acme"]), headers={"HX-Request": "true"}).content.decode()
        assert "<form" not in html and "<table" in html


def test_lists_show_empty_states_for_an_empty_org(tenancy: Tenancy) -> None:
    html = client_for(tenancy.viewer).get(reverse("key_list", args=["acme"])).content.decode()
    assert "No key was used in this period." in html


def test_outsiders_get_404_on_drill_downs_lists_partials_and_csv(usage_data: UsageData) -> None:
    client = client_for(usage_data.t.outsider)
    urls = [
        project_url(),
        key_url(usage_data),
        reverse("project_list", args=["acme"]),
        reverse("key_list", args=["acme"]),
    ]
    for url in urls:
        for params in ({}, {"panel": "spend"}, {"panel": "requests", "format": "csv"}):
            assert client.get(url, params).status_code == 404
            assert client.get(url, params, headers={"HX-Request": "true"}).status_code == 404


def test_a_key_of_another_org_is_404_even_for_a_member(usage_data: UsageData) -> None:
    foreign = factories.make_key(usage_data.t.other_org, name="foreign")
    response = client_for(usage_data.t.viewer).get(reverse("key_detail", args=["acme", foreign.public_id]))
    assert response.status_code == 404


@pytest.mark.parametrize("name", ["project_list", "key_list"])
def test_the_lists_run_a_fixed_number_of_queries(
    usage_data: UsageData, name: str, django_assert_max_num_queries: Any
) -> None:
    client = client_for(usage_data.t.viewer)
    with django_assert_max_num_queries(9):
        client.get(reverse(name, args=["acme"]), {"preset": "90d"})


def test_the_drill_down_pages_run_a_fixed_number_of_queries(
    usage_data: UsageData, django_assert_max_num_queries: Any
) -> None:
    client = client_for(usage_data.t.viewer)
    with django_assert_max_num_queries(12):
        client.get(project_url())
    with django_assert_max_num_queries(12):
        client.get(key_url(usage_data))
