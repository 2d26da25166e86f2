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
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect, trigger_client_event

from projects.http import AuthedRequest
from projects.models import Project, Role
from projects.selectors import OrgAccess, get_org_for_user, refused_choices

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
from .services.alerts import webhook_secret_rotate
from .services.budgets import budget_delete as budget_delete_service
from .services.budgets import budget_save

TEMPLATE = "billing/budget_list.html"
EDIT_TEMPLATE = "billing/budget_edit.html"
# The webhook signing card, shared with the alert settings: what an htmx rotation swaps in.
SIGNING_FRAGMENT = "billing/_webhook_signing.html"
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


def _never_cache(response: HttpResponse) -> HttpResponse:
    """A response that carries a signing secret must not be kept by any cache or the back button."""
    add_never_cache_headers(response)
    return response


@require_http_methods(["GET", "POST"])
@login_required
def budget_create(request: AuthedRequest, org_slug: str) -> HttpResponse:
    """POST a new budget. htmx gets the form fragment back (errors, or a blank form plus a
    "budget-saved" event that refreshes the variance panel); plain POSTs redirect to the list.

    A budget saved with a webhook gets a signing secret that this one response shows (plain POSTs
    then get the list page with it instead of a redirect, so the secret never travels in a session).
    """
    access = get_org_for_user(request.user, org_slug)
    if request.method == "GET":
        return redirect("budget_list", org_slug)
    if not _can_manage_any(access):
        raise PermissionDenied("Only admins and project owners manage budgets")
    form = _budget_form(access, request.POST)
    if form.is_valid() and access.membership.can_manage_budget_of(form.cleaned_data.get("project")):
        budget, secret = budget_save(form=form, organization=access.organization, user=request.user)
        reveal = {"signer": budget, "revealed_secret": secret, **_signing_urls(org_slug, budget, True)}
        if not request.htmx:
            if secret is None:
                return redirect("budget_list", org_slug)
            context = {
                "access": access,
                "org": access.organization,
                "nav": "budgets",
                "form": _budget_form(access),
                "saved": True,
                **reveal,
                **_panel_context(access, request),
            }
            return _never_cache(render(request, TEMPLATE, context))
        context = {
            "access": access,
            "org": access.organization,
            "form": _budget_form(access),
            "saved": True,
            **reveal,
        }
        response = trigger_client_event(render(request, f"{TEMPLATE}#budget-form", context), SAVED_EVENT)
        return _never_cache(response) if secret else response
    refused_choices(form, request.user, org_slug)
    context = {"access": access, "org": access.organization, "form": form}
    if request.htmx:
        return render(request, f"{TEMPLATE}#budget-form", context)
    context.update({"nav": "budgets", **_panel_context(access, request)})
    return render(request, TEMPLATE, context)


def _signing_urls(org_slug: str, budget: Budget, can_manage: bool) -> dict[str, Any]:
    return {
        "rotate_url": reverse("budget_webhook_rotate", args=[org_slug, budget.public_id]),
        "can_rotate": can_manage,
    }


def _edit_context(
    access: OrgAccess, budget: Budget, form: BudgetForm | None, *, secret: str | None = None
) -> dict[str, Any]:
    can_manage = access.membership.can_manage_budget_of(budget.project)
    return {
        "access": access,
        "org": access.organization,
        "nav": "budgets",
        "budget": budget,
        "form": form if can_manage else None,
        "signer": budget,
        "revealed_secret": secret,
        **_signing_urls(access.organization.slug, budget, can_manage),
    }


@require_http_methods(["GET", "POST"])
@login_required
def budget_edit(request: AuthedRequest, org_slug: str, budget_id: str) -> HttpResponse:
    """Edit one budget: the project's owner or an admin; everyone else may look but gets 403 on POST.

    Setting or changing the webhook URL answers with the page (htmx: the form fragment) showing the
    new signing secret once, instead of going back to the list.
    """
    access, budget = get_budget_for_user(request.user, org_slug, budget_id)
    can_manage = access.membership.can_manage_budget_of(budget.project)
    secret = None
    if request.method == "POST":
        if not can_manage:
            raise PermissionDenied("You cannot manage this budget")
        form = _budget_form(access, request.POST, instance=budget)
        if form.is_valid() and access.membership.can_manage_budget_of(form.cleaned_data.get("project")):
            budget, secret = budget_save(form=form, organization=access.organization, user=request.user)
            if secret is None:
                if request.htmx:
                    return HttpResponseClientRedirect(reverse("budget_list", args=[org_slug]))
                return redirect("budget_list", org_slug)
            form = _budget_form(access, instance=budget)
        else:
            refused_choices(form, request.user, org_slug)
    else:
        form = _budget_form(access, instance=budget)
    context = _edit_context(access, budget, form, secret=secret)
    if form.is_bound and form.errors:
        # A failed validation has already copied the typed values onto ``budget``: the page header
        # and the signing card show what is stored, not a webhook URL that was never saved.
        stored = Budget.objects.select_related("project").get(pk=budget.pk)
        context.update({"budget": stored, "signer": stored})
    context["saved"] = secret is not None
    if request.htmx and request.method == "POST":
        response = render(request, f"{EDIT_TEMPLATE}#budget-edit", context)
    else:
        response = render(request, EDIT_TEMPLATE, context)
    return _never_cache(response) if secret else response


@require_http_methods(["GET", "POST"])
@login_required
def budget_webhook_rotate(request: AuthedRequest, org_slug: str, budget_id: str) -> HttpResponse:
    """POST: give the budget's webhook a new signing secret and show it once (admins and the project's
    owner). htmx gets the signing card back; plain POSTs get the edit page. GET goes to the edit page."""
    access, budget = get_budget_for_user(request.user, org_slug, budget_id)
    if request.method == "GET":
        return redirect("budget_edit", org_slug, budget.public_id)
    if not access.membership.can_manage_budget_of(budget.project):
        raise PermissionDenied("Only admins and this project's owner rotate its signing secret")
    context = _edit_context(access, budget, _budget_form(access, instance=budget))
    template = SIGNING_FRAGMENT if request.htmx else EDIT_TEMPLATE
    if not budget.webhook_url:
        context["signing_error"] = (
            "This budget has no webhook, so there is no secret to rotate. Set a URL first."
        )
        # htmx swaps only 2xx answers, so the fragment with the message comes back as 200.
        return render(request, template, context, status=200 if request.htmx else 400)
    context["revealed_secret"] = webhook_secret_rotate(signer=budget)
    return _never_cache(render(request, template, context))


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
