"""Low-balance alerts per provider account: each account against its own runway and amount thresholds,
the migration that copied the organization's old values onto every account, and the thresholds form."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pytest
import time_machine
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from billing.models import AlertEvent, AlertKind, BalanceSnapshot
from billing.services.alerts import alerts_evaluate
from projects.models import ProviderAccount
from tests import factories
from tests.billing.builders import spend
from tests.conftest import Tenancy, client_for

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
HX = {"HX-Request": "true"}


def _account(
    tenancy: Tenancy, name: str, *, balance: str, daily: str | None, **thresholds: object
) -> ProviderAccount:
    account = factories.make_account(tenancy.org, "newapi", name=name, **thresholds)
    BalanceSnapshot.objects.create(
        provider_account=account, taken_at=NOW - timedelta(hours=1), remaining=D(balance)
    )
    if daily is not None:
        for day in range(13, 20):  # the 7 full days before today
            spend(tenancy.org, date(2026, 11, day), daily, account=account)
    return account


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_each_account_alerts_against_its_own_runway_threshold(tenancy: Tenancy) -> None:
    # Both hold $20.00 and burn $5.00 a day: 4.0 days of runway each.
    strict = _account(tenancy, "Prod gateway", balance="20", daily="5", low_balance_runway_days=5)
    relaxed = _account(tenancy, "Lab gateway", balance="20", daily="5", low_balance_runway_days=4)

    [event] = alerts_evaluate(organization=tenancy.org)

    assert (event.kind, event.provider_account) == (AlertKind.LOW_BALANCE, strict)
    assert event.title == "Prod gateway balance is low: $20.00"
    assert event.message == (
        "Prod gateway has $20.00 left, about 4.0 days at the 7-day average "
        "(this account alerts under 5 days of runway). Suggested top-up: $180.00."
    )
    assert event.data["threshold_runway_days"] == "5"
    # 4.0 days is not under 4: the lab account stays quiet, today and on a re-run.
    assert not AlertEvent.objects.filter(provider_account=relaxed).exists()
    assert alerts_evaluate(organization=tenancy.org) == []


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_each_account_alerts_against_its_own_amount_floor(tenancy: Tenancy) -> None:
    # $49.99 and no recent spend (no runway figure): only the amount floors can alert.
    high = _account(tenancy, "OpenRouter main", balance="49.99", daily=None, low_balance_amount=D("50"))
    low = _account(tenancy, "OpenRouter spare", balance="49.99", daily=None, low_balance_amount=D("49.99"))
    none = _account(tenancy, "OpenRouter test", balance="0.01", daily=None)

    [event] = alerts_evaluate(organization=tenancy.org)

    assert event.provider_account == high
    assert event.message == (
        "OpenRouter main has $49.99 left, no recent spend (this account alerts under $50.00)."
    )
    assert event.data["threshold_amount"] == "50"
    assert not AlertEvent.objects.filter(provider_account__in=[low, none]).exists()


@pytest.mark.django_db(transaction=True)
def test_the_migration_copies_each_organizations_thresholds_and_webhook_secret(tenancy: Tenancy) -> None:
    """Runs billing 0004 for real: from the schema before it, with data in the old shape, forwards."""
    before = [("billing", "0003_month_close"), ("projects", "0003_account_low_balance_thresholds")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        Organization = old.get_model("projects", "Organization")
        Account = old.get_model("projects", "ProviderAccount")
        Policy = old.get_model("billing", "AlertPolicy")
        Budget = old.get_model("billing", "Budget")
        acme = Organization.objects.get(slug="acme")
        globex = Organization.objects.get(slug="globex")
        Policy.objects.create(
            organization=acme,
            low_balance_runway_days=14,
            low_balance_amount=D("25.5"),
            webhook_secret_encrypted="gAAAAA-the-org-token",
        )
        kw = {"kind": "newapi", "base_url": "http://127.0.0.1:9"}
        Account.objects.create(organization=acme, name="a1", slug="a1", **kw)
        Account.objects.create(organization=acme, name="a2", slug="a2", currency="CNY", **kw)
        Account.objects.create(organization=globex, name="g1", slug="g1", **kw)  # no policy: defaults
        hooked = Budget.objects.create(
            organization=acme, monthly_amount=D("100"), webhook_url="https://h.test/"
        )
        plain = Budget.objects.create(organization=acme, monthly_amount=D("100"))
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())

    from billing.models import Budget as NewBudget

    values = dict(
        ProviderAccount.objects.values_list("slug", "low_balance_runway_days").filter(
            slug__in=["a1", "a2", "g1"]
        )
    )
    amounts = dict(
        ProviderAccount.objects.values_list("slug", "low_balance_amount").filter(slug__in=["a1", "a2", "g1"])
    )
    assert values == {"a1": 14, "a2": 14, "g1": 7}
    assert amounts == {"a1": D("25.5"), "a2": D("25.5"), "g1": None}
    secrets = dict(NewBudget.objects.values_list("pk", "webhook_secret_encrypted"))
    assert secrets[hooked.pk] == "gAAAAA-the-org-token"  # same signatures until someone rotates
    assert secrets[plain.pk] == ""
    assert NewBudget.objects.get(pk=hooked.pk).webhook_secret_hint == ""  # never shown, so no hint


# --- The thresholds form on the balance page -----------------------------------------------------------


def _url(account: ProviderAccount) -> str:
    return reverse("account_low_balance_edit", args=["acme", account.slug])


@pytest.mark.django_db
def test_admin_sets_an_accounts_thresholds_with_htmx_and_bad_values_are_explained(tenancy: Tenancy) -> None:
    account = factories.make_account(tenancy.org, "deepseek", name="DeepSeek", currency="CNY")
    other = factories.make_account(tenancy.org, "newapi")
    client = client_for(tenancy.admin)
    page = client.get(reverse("balance_detail", args=["acme", account.slug])).content.decode()
    assert 'name="low-low_balance_runway_days"' in page
    assert "Also alert below this balance, in CNY (optional)" in page

    cases = [
        ({"low-low_balance_runway_days": "0", "low-low_balance_amount": ""}, "Use at least 1 day of runway"),
        (
            {"low-low_balance_runway_days": "400", "low-low_balance_amount": ""},
            "Use at most 365 days of runway",
        ),
        ({"low-low_balance_runway_days": "", "low-low_balance_amount": ""}, "Enter a number of days, e.g. 7"),
        (
            {"low-low_balance_runway_days": "7", "low-low_balance_amount": "ten"},
            "Enter the amount as a number, e.g. 25",
        ),
        (
            {"low-low_balance_runway_days": "7", "low-low_balance_amount": "-1"},
            "The amount cannot be negative; leave it empty for no floor",
        ),
    ]
    for data, message in cases:
        response = client.post(_url(account), data, headers=HX)
        html = response.content.decode()
        assert response.status_code == 200, data
        assert message in html, data
        assert html.lstrip().startswith('<div class="card" id="low-balance-card">')  # the fragment only
    account.refresh_from_db()
    assert (account.low_balance_runway_days, account.low_balance_amount) == (7, None)

    response = client.post(
        _url(account), {"low-low_balance_runway_days": "10", "low-low_balance_amount": "150.50"}, headers=HX
    )
    html = response.content.decode()
    assert "Thresholds saved." in html
    assert "Alerts (once a day) when DeepSeek has under 10 days of runway or under ¥150.50." in html
    account.refresh_from_db()
    other.refresh_from_db()
    assert (account.low_balance_runway_days, account.low_balance_amount) == (10, D("150.5"))
    assert (other.low_balance_runway_days, other.low_balance_amount) == (7, None)  # only this account

    # Without htmx: a redirect back to the balance page, and an empty amount clears the floor.
    plain = client.post(_url(account), {"low-low_balance_runway_days": "3", "low-low_balance_amount": ""})
    assert plain.status_code == 302 and plain["Location"] == reverse(
        "balance_detail", args=["acme", account.slug]
    )
    account.refresh_from_db()
    assert (account.low_balance_runway_days, account.low_balance_amount) == (3, None)
    listing = client.get(reverse("balance_list", args=["acme"])).content.decode()
    assert "alerts under 3 d" in listing


@pytest.mark.django_db
def test_only_admins_change_thresholds_and_outsiders_get_404(tenancy: Tenancy) -> None:
    account = factories.make_account(tenancy.org, "newapi")
    data = {"low-low_balance_runway_days": "30", "low-low_balance_amount": "1000"}
    for role in ("viewer", "finance", "owner"):
        client = client_for(getattr(tenancy, role))
        assert client.post(_url(account), data).status_code == 403, role
        assert client.post(_url(account), data, headers=HX).status_code == 403, role
        page = client.get(reverse("balance_detail", args=["acme", account.slug])).content.decode()
        assert 'name="low-low_balance_runway_days"' not in page, role
        assert "Admins change these thresholds." in page, role
    outsider = client_for(tenancy.outsider)
    assert outsider.post(_url(account), data).status_code == 404
    assert outsider.get(_url(account)).status_code == 404
    account.refresh_from_db()
    assert (account.low_balance_runway_days, account.low_balance_amount) == (7, None)
