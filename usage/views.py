"""Usage analytics pages: the explorer, project and key drill-downs, and the project and key lists.

Every page resolves the organization (and project or key) through a scoping helper that 404s
outsiders; htmx requests get a named partial of the page's template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from projects.http import AuthedRequest
from projects.models import ApiKey, Project
from projects.selectors import (
    OrgAccess,
    get_key_for_user,
    get_org_for_user,
    get_project_for_user,
    refused_choices,
)

from .exports import stream_csv
from .forms import UsageFilterForm
from .panels import PANELS, REQUEST_COLUMNS, PanelInput, requests_csv_rows
from .selectors import currencies_in_use, freshness, spend_by_key, spend_by_project

EXPLORER_TEMPLATE = "usage/explorer.html"


@dataclass(frozen=True)
class Scope:
    """What an analytics page is about: the whole organization, one project or one key."""

    title: str
    url: str
    nav: str
    hide: tuple[str, ...] = ()
    project: Project | None = None
    key: ApiKey | None = None
    crumbs: list[tuple[str, str]] = field(default_factory=list)


def _today(access: OrgAccess) -> Any:
    return timezone.now().astimezone(access.organization.zoneinfo).date()


def _analytics_page(request: AuthedRequest, access: OrgAccess, scope: Scope) -> HttpResponseBase:
    """Full page, htmx body, one htmx panel, or one panel's CSV: only the requested part is computed."""
    org = access.organization
    panel_name = request.GET.get("panel", "")
    if panel_name and panel_name not in PANELS:
        raise Http404("No such panel")
    want_csv = request.GET.get("format") == "csv"
    if want_csv and not panel_name:
        raise Http404("Name a panel to export")

    form = UsageFilterForm(request.GET, organization=org, today=_today(access), hide=scope.hide)
    refused_choices(form, request.user, org.slug)
    query = form.query()
    if scope.project is not None:
        query = query.with_filter(project_ids=(scope.project.pk,), environments=())
    if scope.key is not None:
        query = query.with_filter(key_ids=(scope.key.pk,), project_ids=(), environments=(), account_ids=())
    currencies = currencies_in_use(organization=org, flt=query.flt)
    currency = request.GET.get("currency", "")
    if currency not in currencies:
        currency = currencies[0]
    if currency != currencies[0]:
        query = query.with_params(currency=currency)
    panel_input = PanelInput(
        organization=org,
        query=query,
        currency=currency,
        page=request.GET.get("page", "1"),
        status=request.GET.get("status", ""),
    )

    if want_csv:
        filename = f"{org.slug}-{panel_name}-{query.flt.start}-{query.flt.end}.csv"
        if panel_name == "requests":
            return stream_csv([c.label for c in REQUEST_COLUMNS], requests_csv_rows(panel_input), filename)
        built = PANELS[panel_name].build(panel_input)
        table = built.tables.get(request.GET.get("table", "main"))
        if table is None:
            raise Http404("No such table")
        if table.name != panel_name:
            filename = filename.replace(f"-{panel_name}-", f"-{panel_name}-{table.name}-")
        return stream_csv([c.label for c in table.columns], table.csv_rows(), filename)

    context: dict[str, Any] = {
        "access": access,
        "org": org,
        "nav": scope.nav,
        "scope": scope,
        "query": query,
        "currency": currency,
        "currencies": currencies,
        "panels": [
            {
                "name": spec.name,
                "title": spec.title,
                "url": f"{scope.url}?{query.querystring(panel=spec.name)}",
            }
            for spec in PANELS.values()
        ],
        "csv_base": f"{scope.url}?{query.querystring(format='csv')}",
        "page_url": scope.url,
        "panel_name": panel_name,
        "panel_url": f"{scope.url}?{query.querystring(panel=panel_name)}" if panel_name else "",
        "status_choices": [("", "All"), ("success", "Succeeded"), ("error", "Failed")],
    }
    if panel_name:
        context["panel"] = PANELS[panel_name].build(panel_input)
    if request.htmx and not request.htmx.history_restore_request:
        if panel_name:
            return render(request, f"{EXPLORER_TEMPLATE}#panel-{panel_name}", context)
        return render(request, f"{EXPLORER_TEMPLATE}#explorer-body", context)
    context["form"] = form
    context["freshness"] = freshness(organization=org)
    return render(request, EXPLORER_TEMPLATE, context)


@require_GET
@login_required
def usage_explorer(request: AuthedRequest, org_slug: str) -> HttpResponseBase:
    """The usage explorer: a filter bar and lazily loaded panels over the organization's rollups."""
    access = get_org_for_user(request.user, org_slug)
    scope = Scope(title="Usage explorer", url=reverse("usage_explorer", args=[org_slug]), nav="usage")
    return _analytics_page(request, access, scope)


@require_GET
@login_required
def project_detail(request: AuthedRequest, org_slug: str, project_slug: str) -> HttpResponseBase:
    """One project's analytics: the explorer's panels pre-filtered to the project."""
    access, project = get_project_for_user(request.user, org_slug, project_slug)
    scope = Scope(
        title=project.name,
        url=reverse("project_detail", args=[org_slug, project_slug]),
        nav="projects",
        hide=("project", "environment"),
        project=project,
        crumbs=[("Projects", reverse("project_list", args=[org_slug]))],
    )
    return _analytics_page(request, access, scope)


@require_GET
@login_required
def key_detail(request: AuthedRequest, org_slug: str, key_id: UUID) -> HttpResponseBase:
    """One API key's analytics: the explorer's panels pre-filtered to the key."""
    access, key = get_key_for_user(request.user, org_slug, str(key_id))
    scope = Scope(
        title=key.name,
        url=reverse("key_detail", args=[org_slug, key.public_id]),
        nav="keys",
        hide=("project", "environment", "account", "key"),
        key=key,
        crumbs=[("Keys", reverse("key_list", args=[org_slug]))],
    )
    return _analytics_page(request, access, scope)


LIST_HIDE = ("project", "key", "model", "granularity", "group_by")


def _list_page(request: AuthedRequest, org_slug: str, *, which: str) -> HttpResponseBase:
    access = get_org_for_user(request.user, org_slug)
    org = access.organization
    hide = LIST_HIDE if which == "projects" else (*LIST_HIDE, "environment")
    form = UsageFilterForm(request.GET, organization=org, today=_today(access), hide=hide)
    refused_choices(form, request.user, org.slug)
    query = form.query()
    currencies = currencies_in_use(organization=org, flt=query.flt)
    currency = request.GET.get("currency", "")
    if currency not in currencies:
        currency = currencies[0]
    template = f"usage/{which[:-1]}_list.html"
    url = reverse(f"{which[:-1]}_list", args=[org_slug])
    context: dict[str, Any] = {
        "access": access,
        "org": org,
        "nav": which,
        "query": query,
        "currency": currency,
        "currencies": currencies,
        "page_url": url,
    }
    if which == "projects":
        context["rows"] = spend_by_project(organization=org, flt=query.flt, currency=currency)
    else:
        context["rows"] = spend_by_key(organization=org, flt=query.flt, currency=currency)
    if request.htmx and not request.htmx.history_restore_request:
        return render(request, f"{template}#list-body", context)
    context["form"] = form
    context["freshness"] = freshness(organization=org)
    return render(request, template, context)


@require_GET
@login_required
def project_list(request: AuthedRequest, org_slug: str) -> HttpResponseBase:
    """Every project with its spend in the period ("no data" for projects without requests)."""
    return _list_page(request, org_slug, which="projects")


@require_GET
@login_required
def key_list(request: AuthedRequest, org_slug: str) -> HttpResponseBase:
    """Every key with requests in the period: spend, requests, failures, last use; unassigned flagged."""
    return _list_page(request, org_slug, which="keys")
