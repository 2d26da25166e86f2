"""Month review for finance: the review page, month close/reopen, and the month's CSV and FOCUS exports.

Every view resolves the organization through ``get_org_for_user`` (outsiders get 404); closing and
reopening need the finance or admin role (others get 403). Months are ``YYYY-MM`` in the URL and
mean the organization's local month.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from projects.http import AuthedRequest
from projects.models import Role
from projects.selectors import OrgAccess, get_org_for_user
from usage import charts
from usage.exports import stream_csv
from usage.selectors import freshness

from . import review as review_reads
from . import rules
from .exports import FOCUS_COLUMNS, USAGE_COLUMNS, month_focus_rows, month_usage_rows
from .models import MonthEvent, StatementStatus
from .review import month_label, month_window, parse_month
from .services.statements import (
    StatementError,
    current_statement,
    delta_totals,
    period_close,
    period_reopen,
    restatement_delta,
)

TEMPLATE = "billing/month_review.html"
CLOSERS = frozenset({Role.ADMIN, Role.FINANCE})


def _today(access: OrgAccess) -> date:
    return timezone.now().astimezone(access.organization.zoneinfo).date()


def _month_or_404(month: str) -> date:
    parsed = parse_month(month)
    if parsed is None:
        raise Http404("No such month")
    return parsed


def _review_url(org_slug: str, month: date) -> str:
    return reverse("month_review_month", kwargs={"org_slug": org_slug, "month": month_label(month)})


def _render_review(request: AuthedRequest, access: OrgAccess, month: date) -> HttpResponse:
    org = access.organization
    today = _today(access)
    review = review_reads.month_review(
        organization=org, month=month, today=today, currency=request.GET.get("currency")
    )
    statement = current_statement(organization=org, month=month)
    deltas = restatement_delta(statement=statement) if statement else []
    window = review.window
    daily = review.daily_by_project
    context: dict[str, Any] = {
        "access": access,
        "org": org,
        "nav": "review",
        "review": review,
        "window": window,
        "month": month,
        "month_label": window.label,
        "previous_url": _review_url(org.slug, window.previous),
        "next_url": _review_url(org.slug, window.next) if window.next <= today.replace(day=1) else "",
        "statement": statement,
        "is_closed": statement is not None and statement.status == StatementStatus.CLOSED,
        "deltas": deltas,
        "delta_totals": delta_totals(deltas),
        "events": list(
            MonthEvent.objects.filter(organization=org, month=month)
            .select_related("user")
            .order_by("-created_at")[:20]
        ),
        "can_close": access.role in CLOSERS,
        "spend_figure": charts.spend_over_time(
            daily,
            currency=review.currency,
            start=window.first,
            end=min(window.last, max(today, window.first)),
        )
        if daily
        else None,
        "export_csv_url": reverse("month_export_csv", kwargs={"org_slug": org.slug, "month": window.label}),
        "export_focus_url": reverse(
            "month_export_focus", kwargs={"org_slug": org.slug, "month": window.label}
        ),
    }
    if request.htmx and not request.htmx.history_restore_request:
        return render(request, f"{TEMPLATE}#review-body", context)
    context["freshness"] = freshness(organization=org)
    return render(request, TEMPLATE, context)


@require_GET
@login_required
def month_review(request: AuthedRequest, org_slug: str) -> HttpResponse:
    """The month review of last month (the organization's local calendar)."""
    access = get_org_for_user(request.user, org_slug)
    return _render_review(request, access, rules.add_months(_today(access), -1))


@require_GET
@login_required
def month_review_month(request: AuthedRequest, org_slug: str, month: str) -> HttpResponse:
    """The month review of ``month`` (YYYY-MM): totals, budgets, unit cost, drivers, reconciliation, close."""
    access = get_org_for_user(request.user, org_slug)
    return _render_review(request, access, _month_or_404(month))


def _closer_access(request: AuthedRequest, org_slug: str) -> OrgAccess:
    """Resolve the organization first (outsiders 404 whatever the method), then the role (403)."""
    access = get_org_for_user(request.user, org_slug)
    if access.role not in CLOSERS:
        raise PermissionDenied("Only finance and admins close or reopen months.")
    return access


@require_http_methods(["GET", "POST"])
@login_required
def month_close(request: AuthedRequest, org_slug: str, month: str) -> HttpResponse:
    """Close (freeze) the month: finance or admin only."""
    access = _closer_access(request, org_slug)
    parsed = _month_or_404(month)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        statement = period_close(organization=access.organization, month=parsed, user=request.user)
    except StatementError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{parsed:%B %Y} closed (statement v{statement.version}).")
    return HttpResponseRedirect(_review_url(org_slug, parsed), status=303)


@require_http_methods(["GET", "POST"])
@login_required
def month_reopen(request: AuthedRequest, org_slug: str, month: str) -> HttpResponse:
    """Reopen a closed month; a reason is required and recorded in the audit trail."""
    access = _closer_access(request, org_slug)
    parsed = _month_or_404(month)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        period_reopen(
            organization=access.organization,
            month=parsed,
            user=request.user,
            reason=request.POST.get("reason", ""),
        )
    except StatementError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{parsed:%B %Y} reopened.")
    return HttpResponseRedirect(_review_url(org_slug, parsed), status=303)


@require_GET
@login_required
def month_export_csv(request: AuthedRequest, org_slug: str, month: str) -> StreamingHttpResponse:
    """Usage of the month per day x project x key x model x account, streamed as CSV."""
    access = get_org_for_user(request.user, org_slug)
    org = access.organization
    window = month_window(organization=org, month=_month_or_404(month), today=_today(access))
    rows = month_usage_rows(organization=org, window=window)
    return stream_csv(USAGE_COLUMNS, rows, f"{org.slug}-usage-{window.label}.csv")


@require_GET
@login_required
def month_export_focus(request: AuthedRequest, org_slug: str, month: str) -> StreamingHttpResponse:
    """The month as a FOCUS-aligned cost file (usage, purchases, credits), streamed as CSV."""
    access = get_org_for_user(request.user, org_slug)
    org = access.organization
    window = month_window(organization=org, month=_month_or_404(month), today=_today(access))
    rows = month_focus_rows(organization=org, window=window)
    return stream_csv(FOCUS_COLUMNS, rows, f"{org.slug}-focus-{window.label}.csv")
