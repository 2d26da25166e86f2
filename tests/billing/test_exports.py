"""Month exports: formula injection neutralised, numbers stay numbers, FOCUS columns, streamed."""

from __future__ import annotations

import csv
import io
import zoneinfo
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine

from billing.exports import FOCUS_COLUMNS, USAGE_COLUMNS, exact_amount, model_vendor
from billing.models import TopUp, TopUpSource, TopUpStatus
from tests import factories
from tests.conftest import Tenancy, client_for
from usage.models import UsageRecord
from usage.services import usage_rows_upsert

NOW = datetime(2026, 12, 10, 15, tzinfo=UTC)
NASTY = ['=HYPERLINK("http://evil.example","x")', "+1", "-2+3", "@SUM(1)", "\t=1", "\r=1"]


def _download(client: object, url: str) -> tuple[str, list[dict[str, str]]]:
    response = client.get(url)  # type: ignore[attr-defined]
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    return text, list(csv.DictReader(io.StringIO(text, newline="")))


@pytest.fixture
def ny(tenancy: Tenancy) -> Tenancy:
    tenancy.org.timezone = "America/New_York"
    tenancy.org.save()
    tenancy.org.refresh_from_db()
    return tenancy


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_formula_cells_are_neutralised_and_negative_amounts_stay_numbers(ny: Tenancy) -> None:
    org = ny.org
    account = factories.make_account(org, "newapi", name="@SUM(1)")
    rows = []
    for n, nasty in enumerate(NASTY):
        project = factories.make_project(org, nasty, slug=f"nasty-{n}")
        key = factories.make_key(org, project=project, account=account, name="k")
        key.name = nasty
        key.save()
        rows.append(
            factories.usage_row(
                datetime(2026, 11, 10 + n, 15, tzinfo=UTC), cost="1.00", key=key.external_id, model=nasty
            )
        )
    rows.append(factories.usage_row(datetime(2026, 11, 20, 15, tzinfo=UTC), cost="-12.50", model="refund"))
    usage_rows_upsert(organization=org, rows=rows, account=account)

    for name in ("usage.csv", "focus.csv"):
        text, parsed = _download(client_for(ny.viewer), f"/o/{org.slug}/review/2026-11/{name}")
        assert parsed, name
        for row in parsed:
            for column, cell in row.items():
                assert not cell.startswith(("=", "+", "@", "\t", "\r")), (name, column, cell)
                if cell.startswith("-"):
                    Decimal(cell)  # a negative number, never text
        assert ",-12.50," in text  # unquoted number
        assert "'=HYPERLINK" in text and "'+1" in text and "'-2+3" in text and "'@SUM(1)" in text
        cells = {cell for row in parsed for cell in row.values()}
        assert {"'" + nasty for nasty in NASTY} <= cells, name
        assert text.endswith("\r\n")  # RFC 4180 line ends


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_usage_csv_reimports_to_the_exact_raw_sums_of_the_local_month(ny: Tenancy) -> None:
    org = ny.org
    account = factories.make_account(org, "deepseek", name="DeepSeek main")
    key = factories.make_key(org, project=ny.project, account=account, name="chat")
    rows = [
        factories.usage_row(
            datetime(2026, 11, 1, 3, 59, tzinfo=UTC), cost="9.00", key=key.external_id
        ),  # Oct 31 local
        factories.usage_row(
            datetime(2026, 11, 1, 4, 0, tzinfo=UTC),
            cost="0.0000000007",
            key=key.external_id,
            input_tokens=100,
            cache_read_tokens=40,
            output_tokens=7,
        ),
        factories.usage_row(
            datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
            cost="2.50",
            key=key.external_id,
            status="error",
            error_code="429",
        ),
        factories.usage_row(datetime(2026, 11, 1, 6, 30, tzinfo=UTC), cost="1.25", key=key.external_id),
    ]
    usage_rows_upsert(organization=org, rows=rows, account=account)
    _text, parsed = _download(client_for(ny.finance), f"/o/{org.slug}/review/2026-11/usage.csv")
    assert list(parsed[0]) == USAGE_COLUMNS
    [line] = parsed
    tz = zoneinfo.ZoneInfo("America/New_York")
    november = [r for r in UsageRecord.objects.all() if r.occurred_at.astimezone(tz).month == 11]
    assert Decimal(line["cost"]) == sum((r.cost for r in november), Decimal(0)) == Decimal("3.7500000007")
    assert (line["day"], line["project"], line["api_key"], line["provider_account"]) == (
        "2026-11-01",
        "Chat app",
        key.name,
        "DeepSeek main",
    )
    assert (int(line["requests"]), int(line["failed_requests"])) == (3, 1)
    assert (
        int(line["input_tokens"]),
        int(line["uncached_input_tokens"]),
        int(line["cache_read_tokens"]),
    ) == (100, 60, 40)


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_focus_export_separates_reseller_and_vendor_and_carries_purchases_and_credits(ny: Tenancy) -> None:
    org = ny.org
    gateway = factories.make_account(org, "newapi", name="LaoZhang API")
    direct = factories.make_account(org, "anthropic", name="Anthropic admin")
    key = factories.make_key(org, project=ny.project, account=gateway, name="chat")
    usage_rows_upsert(
        organization=org,
        rows=[
            factories.usage_row(
                datetime(2026, 11, 1, 12, tzinfo=UTC),
                cost="0.75",
                key=key.external_id,
                input_tokens=1000,
                output_tokens=200,
            )
        ],
        account=gateway,
    )
    usage_rows_upsert(
        organization=org,
        rows=[
            factories.usage_row(
                datetime(2026, 11, 2, 12, tzinfo=UTC), cost="1.1000000001", model="claude-sonnet-4-5"
            )
        ],
        account=direct,
    )
    credited = datetime(2026, 11, 5, 12, tzinfo=UTC)
    TopUp.objects.create(
        provider_account=gateway,
        amount=Decimal("50"),
        bonus=Decimal("5"),
        status=TopUpStatus.CREDITED,
        created_at=credited,
        credited_at=credited,
        order_ref="ORD-1",
    )
    TopUp.objects.create(
        provider_account=direct,
        amount=Decimal("20"),
        status=TopUpStatus.CREDITED,
        source=TopUpSource.GRANT,
        created_at=credited,
        credited_at=credited,
        order_ref="G-1",
    )
    TopUp.objects.create(
        provider_account=gateway,
        amount=Decimal("99"),
        status=TopUpStatus.FAILED,
        created_at=credited,
        order_ref="X",
    )

    _text, parsed = _download(client_for(ny.finance), f"/o/{org.slug}/review/2026-11/focus.csv")
    assert list(parsed[0]) == FOCUS_COLUMNS
    usage = [r for r in parsed if r["ChargeCategory"] == "Usage"]
    gpt = next(r for r in usage if r["SkuId"] == "gpt-4o")
    assert (gpt["InvoiceIssuerName"], gpt["ServiceProviderName"]) == ("LaoZhang API", "OpenAI")
    assert (gpt["SubAccountId"], gpt["SubAccountName"], gpt["x_ApiKey"]) == ("chat", "Chat app", key.name)
    assert (gpt["BilledCost"], gpt["EffectiveCost"], gpt["ListCost"]) == ("0.00", "0.75", "0.75")
    assert (gpt["ConsumedQuantity"], gpt["ConsumedUnit"], gpt["x_TokenType"]) == (
        "1200",
        "Tokens",
        "input+output",
    )
    # November 1st 2026 in New York is 25 hours long (DST ends).
    assert (gpt["ChargePeriodStart"], gpt["ChargePeriodEnd"]) == (
        "2026-11-01T04:00:00Z",
        "2026-11-02T05:00:00Z",
    )
    assert (gpt["BillingPeriodStart"], gpt["BillingPeriodEnd"]) == (
        "2026-11-01T04:00:00Z",
        "2026-12-01T05:00:00Z",
    )
    claude = next(r for r in usage if r["SkuId"] == "claude-sonnet-4-5")
    assert (claude["InvoiceIssuerName"], claude["ServiceProviderName"]) == ("Anthropic", "Anthropic")
    assert sum((Decimal(r["EffectiveCost"]) for r in usage), Decimal(0)) == Decimal("1.8500000001")

    purchase = [r for r in parsed if r["ChargeCategory"] == "Purchase"]
    assert [(r["BilledCost"], r["EffectiveCost"], r["InvoiceIssuerName"]) for r in purchase] == [
        ("50.00", "0.00", "LaoZhang API")
    ]
    credits = sorted(
        (r["ChargeDescription"], r["x_CreditAmount"], r["BilledCost"])
        for r in parsed
        if r["ChargeCategory"] == "Credit"
    )
    assert credits == [("Bonus credit with ORD-1", "5.00", "0.00"), ("Granted credit G-1", "20.00", "0.00")]


def test_exact_amount_keeps_every_digit_and_at_least_cents() -> None:
    assert str(exact_amount(Decimal("-12.5000000000"))) == "-12.50"
    assert str(exact_amount(Decimal("100.0000000000"))) == "100.00"
    assert format(exact_amount(Decimal("0.0000000007")), "f") == "0.0000000007"


@pytest.mark.parametrize(
    ("model", "vendor"),
    [
        ("gpt-4o", "OpenAI"),
        ("openai/gpt-4o", "OpenAI"),
        ("claude-sonnet-4-5", "Anthropic"),
        ("deepseek-chat", "DeepSeek"),
        ("gemini-2.5-pro", "Google"),
        ("mystery", ""),
    ],
)
def test_model_vendor_names_the_maker(model: str, vendor: str) -> None:
    assert model_vendor(model) == vendor
