"""The Data sources page: ingestion health per provider account, and "Sync now" for admins.

A separate module from ``usage/views.py`` (the analytics pages) so the two evolve independently;
the page follows the same conventions (scoping helper, one template, htmx partials).
"""

from __future__ import annotations

from datetime import datetime

from celery import current_app
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from projects.http import AuthedRequest
from projects.models import ProviderAccount
from projects.selectors import get_account_for_user, get_org_for_user, refused

from .selectors import freshness
from .source_selectors import SourceStatus
from .source_selectors import data_sources as data_sources_status
from .tasks import ingest_account_usage

TEMPLATE = "usage/data_sources.html"
# How long a card keeps polling after "Sync now" while waiting for the queued run to show up.
SYNC_POLL_SECONDS = 120


@require_GET
@login_required
def data_sources(request: AuthedRequest, org_slug: str) -> HttpResponse:
    """Every account's streams (last success, data complete through, next run, last error) and recent runs.

    htmx requests with ``?account=<slug>`` get that account's card only (used while a sync runs).
    """
    access = get_org_for_user(request.user, org_slug)
    org = access.organization
    account_slug = request.GET.get("account", "") if request.htmx else ""
    sources = data_sources_status(organization=org, account_slug=account_slug or None)
    waiting_since = _parse_since(request.GET.get("since", ""))
    context = {
        "access": access,
        "org": org,
        "nav": "sources",
        "sources": sources,
        "can_sync": access.membership.can_manage_accounts,
        "waiting_since": waiting_since,
    }
    if account_slug:
        if not sources:
            # Another organization's slug in ?account= is logged like a swapped id in a path.
            refused(
                request.user,
                org_slug,
                "provider account",
                account_slug,
                ProviderAccount.objects.filter(slug=account_slug),
            )
            return HttpResponse(status=404)
        context["source"] = sources[0]
        context["polling"] = _still_waiting(sources[0], waiting_since)
        return render(request, f"{TEMPLATE}#source-card", context)
    context["freshness"] = freshness(organization=org)
    return render(request, TEMPLATE, context)


@login_required
def data_sources_sync(request: AuthedRequest, org_slug: str, account_slug: str) -> HttpResponse:
    """Enqueue a usage ingest and a balance poll for one account now (admins only)."""
    access, account = get_account_for_user(request.user, org_slug, account_slug)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not access.membership.can_manage_accounts:
        raise PermissionDenied("Only organization admins can start a sync.")
    requested = timezone.now()
    # Ids only; the billing task is addressed by name because usage never imports billing.
    ingest_account_usage.delay_on_commit(account.pk)  # type: ignore[attr-defined]
    transaction.on_commit(
        lambda: current_app.send_task("billing.tasks.poll_account_balance", args=[account.pk])
    )
    [source] = data_sources_status(organization=access.organization, account_slug=account.slug)
    context = {
        "access": access,
        "org": access.organization,
        "source": source,
        "can_sync": True,
        "polling": True,
        "waiting_since": requested,
        "sync_requested": True,
    }
    if request.htmx:
        return render(request, f"{TEMPLATE}#source-card", context)
    return redirect("data_sources", org_slug=access.organization.slug)


def _parse_since(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    return moment if moment and moment.tzinfo else None


def _still_waiting(source: SourceStatus, since: datetime | None) -> bool:
    if source.busy:
        return True
    if since is None or (timezone.now() - since).total_seconds() > SYNC_POLL_SECONDS:
        return False
    # Keep polling until a run that started after the click has finished.
    return not any(run.started_at >= since and run.finished_at for run in source.runs)
