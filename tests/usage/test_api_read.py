"""GET /api/v1/spend and /api/v1/balances, the schema and the self-hosted docs page."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.test import Client

from billing.models import BalanceSnapshot
from projects.services import ingest_token_create
from tests import factories
from tests.conftest import Tenancy
from usage.services import usage_rows_upsert


def get(secret: str, path: str, **params: Any) -> Any:
    return Client().get(f"/api/v1/{path}", params, headers={"Authorization": f"Bearer {secret}"})


def token(t: Tenancy, project: Any = None) -> str:
    return ingest_token_create(organization=t.org, name="read", created_by=None, project=project)[1]


def seed(t: Tenancy) -> None:
    rows = [
        factories.usage_row(
            datetime(2026, 10, 1, 23, 30, tzinfo=UTC), cost="0.1000000001", project_slug="chat"
        ),
        factories.usage_row(datetime(2026, 10, 2, 1, 0, tzinfo=UTC), cost="0.2", project_slug="chat"),
        factories.usage_row(
            datetime(2026, 10, 2, 2, 0, tzinfo=UTC), cost="5", model="o3", project_slug="batch"
        ),
        factories.usage_row(
            datetime(2026, 10, 2, 3, 0, tzinfo=UTC), cost="7", currency="CNY", project_slug="batch"
        ),
    ]
    usage_rows_upsert(organization=t.org, rows=rows)


def test_spend_by_day_is_per_local_day_and_currency_in_exact_decimal_strings(tenancy: Tenancy) -> None:
    tenancy.org.timezone = "Asia/Shanghai"  # UTC+8: 23:30 UTC on Oct 1 is Oct 2 there
    tenancy.org.save()
    seed(tenancy)

    body = get(token(tenancy), "spend", start="2026-10-01", end="2026-10-03", group_by="day").json()

    assert body["timezone"] == "Asia/Shanghai"
    assert [(r["group"], r["currency"], r["cost"], r["requests"]) for r in body["rows"]] == [
        ("2026-10-02", "CNY", "7.0000000000", 1),
        ("2026-10-02", "USD", "5.3000000001", 3),
    ]


def test_spend_by_project_never_adds_currencies(tenancy: Tenancy) -> None:
    seed(tenancy)
    rows = get(token(tenancy), "spend", start="2026-10-01", end="2026-10-03", group_by="project").json()[
        "rows"
    ]
    assert {(r["group"], r["currency"]): Decimal(r["cost"]) for r in rows} == {
        ("batch", "CNY"): Decimal(7),
        ("batch", "USD"): Decimal(5),
        ("chat", "USD"): Decimal("0.3000000001"),
    }


def test_a_project_limited_token_reads_only_its_project(tenancy: Tenancy) -> None:
    seed(tenancy)
    secret = token(tenancy, project=tenancy.project)
    rows = get(secret, "spend", start="2026-10-01", end="2026-10-03", group_by="model").json()["rows"]
    assert [(r["group"], r["cost"]) for r in rows] == [("gpt-4o", "0.3000000001")]


def test_spend_refuses_a_reversed_or_overlong_range_and_unknown_groupings(tenancy: Tenancy) -> None:
    secret = token(tenancy)
    assert get(secret, "spend", start="2026-10-05", end="2026-10-01").status_code == 422
    assert get(secret, "spend", start="2024-01-01", end="2026-10-01").status_code == 422
    assert get(secret, "spend", group_by="weekday").status_code == 422
    assert get(secret, "spend", start="not-a-date").status_code == 422


def test_spend_with_no_data_is_an_empty_list(tenancy: Tenancy) -> None:
    body = get(token(tenancy), "spend").json()
    assert body["rows"] == []


def test_balances_show_the_latest_snapshot_per_account(tenancy: Tenancy) -> None:
    account = factories.make_account(tenancy.org, slug="gw")
    factories.make_account(tenancy.org, kind="openai", slug="oa")
    for hour, quota in ((1, 1_000_000), (2, 24_997_909)):
        BalanceSnapshot.objects.create(
            provider_account=account,
            taken_at=datetime(2026, 10, 1, hour, tzinfo=UTC),
            remaining=Decimal(quota) / 500_000,
            raw_quota=quota,
        )

    body = get(token(tenancy), "balances").json()

    by_slug = {b["account"]: b for b in body["balances"]}
    assert by_slug["gw"]["remaining"] == "49.9958180000"
    assert by_slug["gw"]["raw_quota"] == 24_997_909
    assert by_slug["oa"]["remaining"] is None


def test_balances_refuse_a_project_limited_token(tenancy: Tenancy) -> None:
    assert get(token(tenancy, project=tenancy.project), "balances").status_code == 403


def test_read_endpoints_need_a_token(tenancy: Tenancy) -> None:
    assert Client().get("/api/v1/spend").status_code == 401
    assert Client().get("/api/v1/balances").status_code == 401


def test_the_schema_documents_every_endpoint_and_the_record_fields(client: Client) -> None:
    schema = client.get("/api/v1/openapi.json").json()

    assert set(schema["paths"]) == {"/api/v1/usage", "/api/v1/spend", "/api/v1/balances"}
    record = schema["paths"]["/api/v1/usage"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    fields = record["properties"]["records"]["items"]["properties"]
    assert {"request_id", "occurred_at", "cost", "currency", "provider", "project", "api_key"} <= set(fields)
    assert schema["components"]["securitySchemes"] == {
        "IngestTokenAuth": {"type": "http", "scheme": "bearer"}
    }


def test_the_docs_page_loads_swagger_from_our_static_files_not_a_cdn(client: Client) -> None:
    html = client.get("/api/v1/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    assert "http://" not in html and "https://" not in html
