"""Every analytics page runs the same number of SQL queries however much data the organization has.

Each page is measured on the usage_data fixture, then again after adding projects, keys, provider
accounts, models and a few hundred more records; the count must be identical and equal to the locked
number (an N+1 query shows up as a difference between the two sizes).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from projects.models import Membership, Role
from tests import factories
from tests.conftest import Tenancy, client_for
from tests.usage.analytics_data import UsageData
from usage.models import IngestRun, Stream, StreamState
from usage.panels import PANELS
from usage.services import usage_rows_upsert

pytestmark = pytest.mark.django_db

# (label, url builder, query params, htmx?)
Page = tuple[str, Callable[[UsageData], str], dict[str, str], bool]

PAGES: list[Page] = [
    ("overview", lambda d: reverse("overview", args=["acme"]), {}, False),
    ("explorer", lambda d: reverse("usage_explorer", args=["acme"]), {"preset": "90d"}, False),
    ("explorer body", lambda d: reverse("usage_explorer", args=["acme"]), {"preset": "90d"}, True),
    ("project page", lambda d: reverse("project_detail", args=["acme", "chat"]), {"preset": "90d"}, False),
    (
        "key page",
        lambda d: reverse("key_detail", args=["acme", d.chat_key.public_id]),
        {"preset": "90d"},
        False,
    ),
    ("project list", lambda d: reverse("project_list", args=["acme"]), {"preset": "90d"}, False),
    ("key list", lambda d: reverse("key_list", args=["acme"]), {"preset": "90d"}, False),
    ("data sources", lambda d: reverse("data_sources", args=["acme"]), {}, False),
]
for _name in PANELS:
    PAGES.append(
        (
            f"panel {_name}",
            lambda d: reverse("usage_explorer", args=["acme"]),
            {"preset": "90d", "panel": _name},
            True,
        )
    )
    PAGES.append(
        (
            f"project panel {_name}",
            lambda d: reverse("project_detail", args=["acme", "chat"]),
            {"preset": "90d", "panel": _name},
            True,
        )
    )
    PAGES.append(
        (
            f"key panel {_name}",
            lambda d: reverse("key_detail", args=["acme", d.chat_key.public_id]),
            {"preset": "90d", "panel": _name},
            True,
        )
    )


# Locked counts. Drill-down panels run one more query than the explorer's: the project or key lookup.
LOCKED = {
    "overview": 15,  # balances with runway: the same account_runways queries as the balances page
    "explorer": 11,
    "explorer body": 4,
    "project page": 11,
    "key page": 10,
    "project list": 9,
    "key list": 8,
    "data sources": 8,
    "panel spend": 5,
    "project panel spend": 6,
    "key panel spend": 6,
    "panel tokens": 7,
    "project panel tokens": 8,
    "key panel tokens": 8,
    "panel models": 5,
    "project panel models": 6,
    "key panel models": 6,
    "panel unit-cost": 5,
    "project panel unit-cost": 6,
    "key panel unit-cost": 6,
    "panel peaks": 5,
    "project panel peaks": 6,
    "key panel peaks": 6,
    "panel errors": 7,
    "project panel errors": 8,
    "key panel errors": 8,
    "panel keys": 7,
    "project panel keys": 8,
    "key panel keys": 8,
    "panel requests": 6,
    "project panel requests": 7,
    "key panel requests": 7,
}


def count_queries(client: Client, data: UsageData, page: Page) -> int:
    label, url, params, htmx = page
    headers = {"HX-Request": "true"} if htmx else {}
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url(data), params, headers=headers)
    assert response.status_code == 200, label
    return len(ctx.captured_queries)


def grow(data: UsageData) -> None:
    """Add 4 projects, 4 accounts with streams and runs, 12 keys, 6 models and ~600 records."""
    org = data.t.org
    start = datetime(2026, 9, 1, 3, tzinfo=UTC)
    for p in range(4):
        project = factories.make_project(org, f"Extra {p}", slug=f"extra-{p}")
        account = factories.make_account(org, "newapi", slug=f"extra-gw-{p}")
        StreamState.objects.create(provider_account=account, stream=Stream.USAGE)
        for _ in range(3):
            IngestRun.objects.create(provider_account=account, organization=org, stream=Stream.USAGE)
        keys = [factories.make_key(org, project=project, account=account, name=f"x{p}") for _ in range(3)]
        rows = [
            factories.usage_row(
                start + timedelta(days=day, hours=(day * 5 + k) % 24),
                model=f"model-{(day + k) % 6}",
                key=key.external_id,
                cost=f"0.{day:02d}",
                input_tokens=100 + day,
                output_tokens=10 + k,
                status="error" if day % 9 == 0 else "success",
                error_code="429" if day % 9 == 0 else "",
                requests=1 + k,
            )
            for day in range(80)
            for k, key in enumerate(keys)
            if (day + k) % 2 == 0
        ]
        usage_rows_upsert(organization=org, rows=rows, account=account)
        # Also spend on the page's own project and key, so drill-downs grow too.
        usage_rows_upsert(
            organization=org,
            rows=[
                factories.usage_row(
                    start + timedelta(days=day, hours=p),
                    model=f"model-{day % 6}",
                    key=data.chat_key.external_id,
                    cost="1.5",
                    requests=2,
                )
                for day in range(80)
            ],
            account=data.account,
        )


def test_every_analytics_page_runs_a_locked_query_count_independent_of_data_size(
    usage_data: UsageData,
) -> None:
    client = client_for(usage_data.t.admin)
    small = {page[0]: count_queries(client, usage_data, page) for page in PAGES}
    grow(usage_data)
    large = {page[0]: count_queries(client, usage_data, page) for page in PAGES}
    assert large == small
    assert small == LOCKED


def test_the_members_page_and_the_htmx_role_row_run_a_locked_query_count(tenancy: Tenancy) -> None:
    """Five members or fifteen, each owning projects: the same queries (no per-member lookups)."""
    client = client_for(tenancy.admin)
    members = reverse("member_list", args=[tenancy.org.slug])
    role = reverse("member_role", args=[tenancy.org.slug, "viewer"])

    def counts(new_role: str) -> tuple[int, int]:
        with CaptureQueriesContext(connection) as page:
            assert client.get(members).status_code == 200
        with CaptureQueriesContext(connection) as row:
            response = client.post(role, {"role": new_role}, headers={"HX-Request": "true"})
            assert (
                response.status_code == 200 and f"Saved: now {new_role.title()}." in response.content.decode()
            )
        return len(page.captured_queries), len(row.captured_queries)

    small = counts("finance")
    for n in range(10):
        user = factories.make_user(f"extra{n}")
        Membership.objects.create(user=user, organization=tenancy.org, role=Role.VIEWER)
        factories.make_project(tenancy.org, f"Owned {n}", slug=f"owned-{n}", owner=user)
    assert counts("viewer") == small
    # Page: session, user, your membership, the members with their users, owned projects, the org
    # switcher. Row: session, user, your membership, theirs, the role change under the org-row lock
    # (lock, update), their projects.
    assert small == (6, 8)
