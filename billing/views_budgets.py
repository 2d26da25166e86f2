"""Budgets page: list, create/edit/delete (htmx forms), allocation and the variance panel."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect, trigger_client_event

from projects.http import AuthedRequest
from projects.models import Project, Role
from projects.selectors import OrgAccess, get_org_for_user

from . import charts, rules
from .forms import BudgetForm
from .models import Budget
from .selectors import (
    budget_allocations,
    budget_grid_window,
    budget_variances,
    budgets_for_org,
    get_budget_for_user,
    spend_grid,
)
from .services.budgets import budget_delete as budget_delete_service
from .services.budgets import budget_save

TEMPLATE = "billing/budget_list.html"
EDIT_TEMPLATE = "billing/budget_edit.html"
HISTORY_MONTHS = 12
SAVED_EVENT = "budget-saved"


def manageable_projects(access: OrgAccess) -> QuerySet[Project]:
    """Projects whose budgets this member may manage: all for admins, their own for project owners."""
    projects = Project.objects.filter(organization=access.organization, archived=False)
    if access.role == Role.ADMIN:
        return projects
    if access.role == Role.OWNER:
        return projects.filter(owner_id=access.membership.user_id)
    return projects.none()


def _can_manage_any(access: OrgAccess) -> bool:
    return access.role in {Role.ADMIN, Role.OWNER}


def _budget_form(access: OrgAccess, data: Any = None, instance: Budget | None = None) -> BudgetForm:
    return BudgetForm(
        data,
        instance=instance,
        organization=access.organization,
        projects=manageable_projects(access),
        allow_org=access.role == Role.ADMIN,
        prefix="budget",
    )


def _today(access: OrgAccess) -> date:
    return timezone.now().astimezone(access.organization.zoneinfo).date()


def _selected_month(request: AuthedRequest, today: date) -> date:
    """The ?month=YYYY-MM of the variance panel, limited to the last 12 months; default this month."""
    current = today.replace(day=1)
    raw = request.GET.get("month", "")
    try:
        chosen = date.fromisoformat(f"{raw}-01") if raw else current
    except ValueError:
        return current
    earliest = rules.add_months(current, -(HISTORY_MONTHS - 1))
    return chosen if earliest <= chosen <= current else current


def _panel_context(access: OrgAccess, request: AuthedRequest) -> dict[str, Any]:
    org = access.organization
    today = _today(access)
    month = _selected_month(request, today)
    budgets = budgets_for_org(organization=org)
    start, end = budget_grid_window(month=month, today=today)
    variances = budget_variances(
        budgets=budgets, grid=spend_grid(organization=org, start=start, end=end), month=month, today=today
    )
    current = today.replace(day=1)
    return {
        "today": today,
        "days_left": rules.days_left_in_month(today),
        "month": month,
        "months": [rules.add_months(current, -n) for n in range(HISTORY_MONTHS)],
        "variances": variances,
        "variance_figure": charts.budget_variance_figure(variances) if variances else None,
        "allocations": budget_allocations(budgets=budgets),
        "manageable_ids": {b.pk for b in budgets if access.membership.can_manage_budget_of(b.project)},
    }


@require_GET
@login_required
def budget_list(request: AuthedRequest, org_slug: str) -> HttpResponse:
    """Budgets with variance (budget, actual, variance, forecast, status) for a month, allocation and a form."""
    access = get_org_for_user(request.user, org_slug)
    context = {
        "access": access,
        "org": access.organization,
        "nav": "budgets",
        **_panel_context(access, request),
    }
    if request.htmx and request.GET.get("panel") == "budgets":
        return render(request, f"{TEMPLATE}#budgets-panel", context)
    context["form"] = _budget_form(access) if _can_manage_any(access) else None
    return render(request, TEMPLATE, context)


@require_http_methods(["GET", "POST"])
@login_required
def budget_create(request: AuthedRequest, org_slug: str) -> HttpResponse:
    """POST a new budget. htmx gets the form fragment back (errors, or a blank form plus a
    "budget-saved" event that refreshes the variance panel); plain POSTs redirect to the list."""
    access = get_org_for_user(request.user, org_slug)
    if request.method == "GET":
        return redirect("budget_list", org_slug)
    if not _can_manage_any(access):
        raise PermissionDenied("Only admins and project owners manage budgets")
    form = _budget_form(access, request.POST)
    if form.is_valid() and access.membership.can_manage_budget_of(form.cleaned_data.get("project")):
        budget_save(form=form, organization=access.organization, user=request.user)
        if not request.htmx:
            return redirect("budget_list", org_slug)
        context = {"access": access, "org": access.organization, "form": _budget_form(access), "saved": True}
        response = render(request, f"{TEMPLATE}#budget-form", context)
        return trigger_client_event(response, SAVED_EVENT)
    context = {"access": access, "org": access.organization, "form": form}
    if request.htmx:
        return render(request, f"{TEMPLATE}#budget-form", context)
    context.update({"nav": "budgets", **_panel_context(access, request)})
    return render(request, TEMPLATE, context)


@require_http_methods(["GET", "POST"])
@login_required
def budget_edit(request: AuthedRequest, org_slug: str, budget_id: str) -> HttpResponse:
    """Edit one budget: the project's owner or an admin; everyone else may look but gets 403 on POST."""
    access, budget = get_budget_for_user(request.user, org_slug, budget_id)
    can_manage = access.membership.can_manage_budget_of(budget.project)
    if request.method == "POST":
        if not can_manage:
            raise PermissionDenied("You cannot manage this budget")
        form = _budget_form(access, request.POST, instance=budget)
        if form.is_valid() and access.membership.can_manage_budget_of(form.cleaned_data.get("project")):
            budget_save(form=form, organization=access.organization, user=request.user)
            if request.htmx:
                return HttpResponseClientRedirect(reverse("budget_list", args=[org_slug]))
            return redirect("budget_list", org_slug)
    else:
        form = _budget_form(access, instance=budget)
    context = {
        "access": access,
        "org": access.organization,
        "nav": "budgets",
        "budget": budget,
        "form": form if can_manage else None,
    }
    if request.htmx and request.method == "POST":
        return render(request, f"{EDIT_TEMPLATE}#budget-form", context)
    return render(request, EDIT_TEMPLATE, context)


@require_http_methods(["GET", "POST"])
@login_required
def budget_delete(request: AuthedRequest, org_slug: str, budget_id: str) -> HttpResponse:
    """GET: the edit page (which holds the delete button); POST: delete, if allowed."""
    access, budget = get_budget_for_user(request.user, org_slug, budget_id)
    if request.method == "GET":
        return redirect("budget_edit", org_slug, budget.public_id)
    if not access.membership.can_manage_budget_of(budget.project):
        raise PermissionDenied("You cannot delete this budget")
    budget_delete_service(budget=budget)
    if request.htmx:
        return HttpResponseClientRedirect(reverse("budget_list", args=[org_slug]))
    return redirect("budget_list", org_slug)
