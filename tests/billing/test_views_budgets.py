"""Budgets page: variance numbers from the rollup, roles, htmx form and panel, allocation, query counts."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal as D
from typing import Any

import pytest
import time_machine
from django.urls import reverse

from billing.models import Budget
from billing.selectors import budget_grid_window, budget_variances, budgets_for_org, spend_grid
from projects.models import Role
from tests import factories
from tests.billing.builders import budget, spend
from tests.conftest import Tenancy, client_for

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
TODAY = date(2026, 11, 20)
HX = {"HX-Request": "true"}


def _november(t: Tenancy) -> None:
    chat, batch = t.project, t.other_project
    spend(t.org, date(2026, 11, 2), "50", project=chat)
    for day in range(13, 20):
        spend(t.org, date(2026, 11, day), "10", project=chat)
    spend(t.org, date(2026, 11, 15), "5", project=chat, model="claude-sonnet-4")
    spend(t.org, TODAY, "8", project=chat)
    spend(t.org, date(2026, 11, 10), "1000", project=batch)  # another project
    spend(t.org, date(2026, 11, 11), "999", project=chat, currency="CNY")  # another currency
    spend(t.org, date(2026, 10, 31), "150", project=chat)  # October


def _variances(t: Tenancy, month: date) -> dict[str, Any]:
    budgets = budgets_for_org(organization=t.org)
    start, end = budget_grid_window(month=month, today=TODAY)
    grid = spend_grid(organization=t.org, start=start, end=end)
    return {v.budget.name: v for v in budget_variances(budgets=budgets, grid=grid, month=month, today=TODAY)}


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_project_budget_variance_and_forecast_come_from_the_rollup_in_the_budget_currency(
    tenancy: Tenancy,
) -> None:
    _november(tenancy)
    budget(tenancy.org, "200", project=tenancy.project, name="chat")
    budget(tenancy.org, "100", project=tenancy.project, name="chat gpt-4o", model="gpt-4o")
    rows = _variances(tenancy, date(2026, 11, 1))

    chat = rows["chat"]
    assert chat.variance.actual == D("133")  # 50 + 7x10 + 5 + 8 today; not batch, not CNY
    assert chat.average_daily == D("75") / 7  # Nov 13-19
    assert chat.variance.forecast == D("133") + D("75") / 7 * 10  # 10 days left in November
    assert (chat.variance.amount, chat.variance.percent, chat.variance.state) == (
        D("-67"),
        D("-33.5"),
        "at-risk",
    )

    scoped = rows["chat gpt-4o"]
    assert scoped.variance.actual == D("128")  # the claude request does not count
    assert (scoped.variance.amount, scoped.variance.percent, scoped.variance.state) == (
        D("28"),
        D("28"),
        "over",
    )


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_a_past_month_shows_its_actual_without_forecast(tenancy: Tenancy) -> None:
    _november(tenancy)
    budget(tenancy.org, "200", project=tenancy.project, name="chat")
    october = _variances(tenancy, date(2026, 10, 1))["chat"]
    assert (october.variance.actual, october.variance.forecast, october.variance.amount) == (
        D("150"),
        D("150"),
        D("-50"),
    )
    assert october.variance.state == "on-track"
    assert october.is_current is False


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_budget_days_are_the_organizations_local_days(tenancy: Tenancy) -> None:
    tenancy.org.timezone = "Asia/Shanghai"
    tenancy.org.save()
    # 2026-10-31 20:00 UTC is already November 1st in Shanghai.
    from usage.services import usage_rows_upsert

    row = factories.usage_row(datetime(2026, 10, 31, 20, tzinfo=UTC), cost="7", project_slug="chat")
    usage_rows_upsert(organization=tenancy.org, rows=[row])
    budget(tenancy.org, "100", project=tenancy.project, name="chat")
    assert _variances(tenancy, date(2026, 11, 1))["chat"].variance.actual == D("7")
    assert _variances(tenancy, date(2026, 10, 1))["chat"].variance.actual == D("0")


def _form(project_id: int | str, amount: str = "200", **extra: str) -> dict[str, Any]:
    data = {
        "budget-project": str(project_id),
        "budget-name": "Chat cap",
        "budget-monthly_amount": amount,
        "budget-daily_amount": "",
        "budget-currency": "USD",
        "budget-model": "",
        "budget-thresholds": "50, 80, 100",
        "budget-recipients": "",
        "budget-webhook_url": "",
    }
    data.update({f"budget-{k}": v for k, v in extra.items()})
    return data


@pytest.mark.django_db
def test_owner_creates_a_budget_for_their_project_with_an_exact_decimal_amount(tenancy: Tenancy) -> None:
    url = reverse("budget_create", args=["acme"])
    response = client_for(tenancy.owner).post(
        url, _form(tenancy.project.pk, "123.45", thresholds="80,50", recipients="a@x.io\nb@x.io"), headers=HX
    )
    assert response.status_code == 200
    assert json.loads(response["HX-Trigger"]) == {"budget-saved": {}}
    saved = Budget.objects.get()
    assert saved.monthly_amount == D("123.45")
    assert saved.project == tenancy.project
    assert saved.thresholds == [50, 80]
    assert saved.recipients == "a@x.io\nb@x.io"
    assert saved.created_by == tenancy.owner
    assert "<html" not in response.content.decode()  # the form fragment only


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("amount", "message"),
    [("0", "Amount must be greater than 0"), ("-5", "Amount must be greater than 0"), ("abc", "as a number")],
)
def test_a_bad_amount_is_refused_with_a_clear_message(tenancy: Tenancy, amount: str, message: str) -> None:
    response = client_for(tenancy.owner).post(
        reverse("budget_create", args=["acme"]), _form(tenancy.project.pk, amount), headers=HX
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert "HX-Trigger" not in response
    assert not Budget.objects.exists()


@pytest.mark.django_db
def test_bad_thresholds_emails_and_daily_above_monthly_are_refused(tenancy: Tenancy) -> None:
    client = client_for(tenancy.owner)
    url = reverse("budget_create", args=["acme"])
    html = client.post(url, _form(tenancy.project.pk, thresholds="50, lots"), headers=HX).content.decode()
    assert "Thresholds:" in html
    html = client.post(url, _form(tenancy.project.pk, recipients="not-an-email"), headers=HX).content.decode()
    assert "Not an e-mail address: not-an-email" in html
    html = client.post(url, _form(tenancy.project.pk, daily_amount="300"), headers=HX).content.decode()
    assert "daily amount cannot be larger" in html
    assert not Budget.objects.exists()


@pytest.mark.django_db
def test_owner_cannot_create_a_budget_for_another_project_or_the_whole_organization(tenancy: Tenancy) -> None:
    client = client_for(tenancy.owner)
    url = reverse("budget_create", args=["acme"])
    assert (
        "Select a valid choice"
        in client.post(url, _form(tenancy.other_project.pk), headers=HX).content.decode()
    )
    assert "This field is required" in client.post(url, _form(""), headers=HX).content.decode()
    assert not Budget.objects.exists()


@pytest.mark.django_db
def test_admin_creates_an_organization_budget(tenancy: Tenancy) -> None:
    response = client_for(tenancy.admin).post(reverse("budget_create", args=["acme"]), _form("", "100"))
    assert response.status_code == 302
    assert Budget.objects.get().project is None


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "finance"])
def test_viewers_and_finance_read_budgets_but_cannot_change_them(tenancy: Tenancy, role: str) -> None:
    client = client_for(getattr(tenancy, role))
    existing = budget(tenancy.org, "100", project=tenancy.project, name="chat")
    page = client.get(reverse("budget_list", args=["acme"]))
    assert page.status_code == 200
    assert "chat" in page.content.decode()
    assert 'id="budget-form"' not in page.content.decode()
    assert client.post(reverse("budget_create", args=["acme"]), _form(tenancy.project.pk)).status_code == 403
    edit = reverse("budget_edit", args=["acme", existing.public_id])
    assert client.post(edit, _form(tenancy.project.pk, "999")).status_code == 403
    assert client.post(reverse("budget_delete", args=["acme", existing.public_id])).status_code == 403
    existing.refresh_from_db()
    assert existing.monthly_amount == D("100")
    assert Budget.objects.count() == 1


@pytest.mark.django_db
def test_owner_edits_their_own_budget_but_not_another_projects(tenancy: Tenancy) -> None:
    client = client_for(tenancy.owner)
    mine = budget(tenancy.org, "100", project=tenancy.project, name="mine")
    theirs = budget(tenancy.org, "100", project=tenancy.other_project, name="theirs")
    response = client.post(
        reverse("budget_edit", args=["acme", mine.public_id]), _form(tenancy.project.pk, "250")
    )
    assert response.status_code == 302
    mine.refresh_from_db()
    assert mine.monthly_amount == D("250")

    url = reverse("budget_edit", args=["acme", theirs.public_id])
    assert client.post(url, _form(tenancy.other_project.pk, "1")).status_code == 403
    assert client.post(reverse("budget_delete", args=["acme", theirs.public_id])).status_code == 403
    theirs.refresh_from_db()
    assert theirs.monthly_amount == D("100")


@pytest.mark.django_db
def test_saving_the_edit_form_as_shown_keeps_the_amounts(tenancy: Tenancy) -> None:
    """The edit page shows stored amounts as typed ("12.5", not the column's "12.5000000000", which
    the 6-decimal field refused), so changing only the name saves."""
    b = budget(tenancy.org, "12.5", project=tenancy.project, name="old", daily_amount=D("2.25"))
    page = client_for(tenancy.owner).get(reverse("budget_edit", args=["acme", b.public_id])).content.decode()
    assert 'value="12.5"' in page and 'value="2.25"' in page
    data = {**_form(tenancy.project.pk, "12.5"), "budget-name": "new", "budget-daily_amount": "2.25"}
    response = client_for(tenancy.owner).post(reverse("budget_edit", args=["acme", b.public_id]), data)
    assert response.status_code == 302
    b.refresh_from_db()
    assert (b.name, b.monthly_amount, b.daily_amount) == ("new", D("12.5"), D("2.25"))


@pytest.mark.django_db
def test_another_organizations_budget_is_a_404_even_under_your_own_org(tenancy: Tenancy) -> None:
    acme_budget = budget(tenancy.org, "100", project=tenancy.project)
    client = client_for(tenancy.outsider)
    assert client.get(reverse("budget_edit", args=["globex", acme_budget.public_id])).status_code == 404
    assert client.post(reverse("budget_delete", args=["globex", acme_budget.public_id])).status_code == 404
    assert Budget.objects.filter(pk=acme_budget.pk).exists()


@pytest.mark.django_db
def test_owner_deletes_their_budget(tenancy: Tenancy) -> None:
    mine = budget(tenancy.org, "100", project=tenancy.project)
    response = client_for(tenancy.owner).post(reverse("budget_delete", args=["acme", mine.public_id]))
    assert response.status_code == 302
    assert not Budget.objects.exists()


@pytest.mark.django_db
def test_budget_page_shows_an_empty_state(tenancy: Tenancy) -> None:
    html = client_for(tenancy.viewer).get(reverse("budget_list", args=["acme"])).content.decode()
    assert "No budgets yet." in html


@pytest.mark.django_db
def test_allocation_shows_project_shares_the_reserve_and_warns_when_over(tenancy: Tenancy) -> None:
    dev = factories.make_project(tenancy.org, "Dev and testing", slug="dev", environment="testing")
    budget(tenancy.org, "100", name="Acme total")
    budget(tenancy.org, "60", project=tenancy.project)
    budget(tenancy.org, "20", project=dev)
    client = client_for(tenancy.viewer)
    html = client.get(reverse("budget_list", args=["acme"])).content.decode()
    assert "Allocation of Acme total" in html
    assert "60%" in html
    assert "Reserve (unallocated)" in html
    assert "$20.00" in html
    assert "more than the organization" not in html

    budget(tenancy.org, "30", project=tenancy.other_project)
    html = client.get(reverse("budget_list", args=["acme"])).content.decode()
    assert "Project budgets add up to $110.00, more than the organization's $100.00." in html


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_the_htmx_panel_is_a_fragment_with_the_variance_figures(tenancy: Tenancy) -> None:
    _november(tenancy)
    budget(tenancy.org, "200", project=tenancy.project, name="chat")
    response = client_for(tenancy.viewer).get(
        reverse("budget_list", args=["acme"]) + "?panel=budgets", headers=HX
    )
    html = response.content.decode()
    assert "<html" not in html
    assert 'id="budgets-panel"' in html
    assert "$133.00" in html and "-$67.00" in html and "-33.5%" in html and "At risk" in html
    assert 'data-figure="fig-budget-variance-data"' in html


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_budget_page_query_count_does_not_grow_with_budgets(
    tenancy: Tenancy, django_assert_max_num_queries: Any
) -> None:
    _november(tenancy)
    for n in range(6):
        project = factories.make_project(tenancy.org, f"P{n}", owner=tenancy.owner)
        budget(tenancy.org, "50", project=project, name=f"b{n}", model="gpt-4o" if n % 2 else "")
    budget(tenancy.org, "1000", name="total")
    client = client_for(tenancy.owner)
    with django_assert_max_num_queries(12):
        assert client.get(reverse("budget_list", args=["acme"])).status_code == 200
    with django_assert_max_num_queries(8):
        assert (
            client.get(reverse("budget_list", args=["acme"]) + "?panel=budgets", headers=HX).status_code
            == 200
        )


@pytest.mark.django_db
def test_members_of_another_role_see_the_role_in_the_form_choices(tenancy: Tenancy) -> None:
    factories.make_member(tenancy.org, Role.OWNER, factories.make_user("owner2"))
    html = client_for(tenancy.owner).get(reverse("budget_list", args=["acme"])).content.decode()
    assert "Chat app" in html
    assert ">Batch jobs<" not in html  # not the owner's project: not offered
    assert "owner2" in html  # members can be notified


@pytest.mark.django_db
def test_owner_cannot_move_their_budget_to_another_project_or_edit_the_organizations(
    tenancy: Tenancy,
) -> None:
    client = client_for(tenancy.owner)
    mine = budget(tenancy.org, "100", project=tenancy.project, name="mine")
    org_budget = budget(tenancy.org, "500", name="org")
    moved = client.post(
        reverse("budget_edit", args=["acme", mine.public_id]),
        _form(tenancy.other_project.pk, "1"),
        headers=HX,
    )
    assert "Select a valid choice" in moved.content.decode()
    mine.refresh_from_db()
    assert (mine.project, mine.monthly_amount) == (tenancy.project, D("100"))
    url = reverse("budget_edit", args=["acme", org_budget.public_id])
    assert client.post(url, _form("", "1")).status_code == 403
    assert client.post(reverse("budget_delete", args=["acme", org_budget.public_id])).status_code == 403
    org_budget.refresh_from_db()
    assert org_budget.monthly_amount == D("500")
