from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from projects.http import AuthedRequest
from projects.selectors import get_org_for_user
from usage import charts
from usage.selectors import (
    UsageFilter,
    currencies_in_use,
    freshness,
    spend_by_day,
    spend_totals,
    top_models,
    top_projects,
)

from .selectors import account_runways, budget_month_status


@require_GET
@login_required
def overview(request: AuthedRequest, org_slug: str) -> HttpResponse:
    """Organization overview: balances, month-to-date spend against budgets, 30-day spend, top projects/models."""
    access = get_org_for_user(request.user, org_slug)
    org = access.organization
    today = timezone.now().astimezone(org.zoneinfo).date()
    last_30 = UsageFilter(start=today - timedelta(days=29), end=today)
    month = UsageFilter(start=today.replace(day=1), end=today)
    currency = currencies_in_use(organization=org, flt=last_30)[0]
    daily = spend_by_day(organization=org, flt=last_30, currency=currency, group_by="model")
    context = {
        "access": access,
        "org": org,
        "today": today,
        "currency": currency,
        # The same figures as the balances page: derived balances (OpenAI, Anthropic) and runway.
        "balances": account_runways(organization=org, today=today),
        "month_totals": spend_totals(organization=org, flt=month),
        "last_30_totals": spend_totals(organization=org, flt=last_30),
        "budgets": budget_month_status(organization=org, month_start=month.start, today=today),
        "spend_figure": charts.spend_over_time(daily, currency=currency, start=last_30.start, end=last_30.end)
        if daily
        else None,
        "top_projects": top_projects(organization=org, flt=last_30, currency=currency),
        "top_models": top_models(organization=org, flt=last_30, currency=currency),
        "freshness": freshness(organization=org),
        "nav": "overview",
    }
    return render(request, "billing/overview.html", context)
