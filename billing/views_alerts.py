"""Alert history with acknowledge."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_http_methods

from projects.http import AuthedRequest
from projects.models import Role
from projects.selectors import OrgAccess, get_org_for_user

from .forms import AlertPolicyForm
from .models import AlertEvent, AlertPolicy
from .selectors import alerts_for_org, get_alert_for_user
from .services.alerts import alert_acknowledge, alert_policy_for, alert_policy_save, webhook_secret_rotate

TEMPLATE = "billing/alert_list.html"
SIGNING_FRAGMENT = "billing/_webhook_signing.html"


def _list_context(
    request: AuthedRequest, access: OrgAccess, policy: AlertPolicy, form: AlertPolicyForm | None
) -> dict[str, Any]:
    open_only = request.GET.get("open") == "1"
    return {
        "policy": policy,
        "policy_form": form,
        "access": access,
        "org": access.organization,
        "nav": "alerts",
        "alerts": alerts_for_org(organization=access.organization, open_only=open_only),
        "open_only": open_only,
        "can_ack": access.role != Role.VIEWER,
        "signer": policy,
        "rotate_url": reverse("alert_webhook_rotate", args=[access.organization.slug]),
        "can_rotate": access.role == Role.ADMIN,
    }


@require_http_methods(["GET", "POST"])
@login_required
def alert_list(request: AuthedRequest, org_slug: str) -> HttpResponse:
    """The newest 200 alerts (or only open ones with ?open=1), with delivery status per channel; admins
    also get the organization's alert settings (POST saves them). Saving a new or changed webhook URL
    answers with the page showing its new signing secret once, instead of redirecting."""
    access = get_org_for_user(request.user, org_slug)
    is_admin = access.role == Role.ADMIN
    # Readers see the settings (the defaults until an admin saves some) without creating a row.
    policy = (
        alert_policy_for(access.organization)
        if is_admin
        else AlertPolicy.objects.filter(organization=access.organization).first()
        or AlertPolicy(organization=access.organization)
    )
    form = AlertPolicyForm(instance=policy, prefix="policy") if is_admin else None
    if request.method == "POST":
        if not is_admin:
            raise PermissionDenied("Only admins change alert settings")
        form = AlertPolicyForm(request.POST, instance=policy, prefix="policy")
        if form.is_valid():
            secret = alert_policy_save(form=form)
            if secret is None:
                return redirect("alert_list", org_slug)
            context = _list_context(
                request, access, policy, AlertPolicyForm(instance=policy, prefix="policy")
            )
            context.update({"revealed_secret": secret, "saved": True})
            response = render(request, TEMPLATE, context)
            add_never_cache_headers(response)
            return response
        context = _list_context(request, access, policy, form)
        # The failed form already copied the typed values onto ``policy``: the signing card shows
        # the stored webhook, not one that was never saved.
        context["signer"] = AlertPolicy.objects.get(pk=policy.pk)
        return render(request, TEMPLATE, context)
    return render(request, TEMPLATE, _list_context(request, access, policy, form))


@require_http_methods(["GET", "POST"])
@login_required
def alert_webhook_rotate(request: AuthedRequest, org_slug: str) -> HttpResponse:
    """POST (admins): a new signing secret for the organization's alert webhook, shown once. htmx gets
    the signing card back, plain POSTs the alert page. GET goes to the alert page."""
    access = get_org_for_user(request.user, org_slug)
    if request.method == "GET":
        return redirect("alert_list", org_slug)
    if access.role != Role.ADMIN:
        raise PermissionDenied("Only admins rotate the organization's webhook signing secret")
    policy = alert_policy_for(access.organization)
    context = _list_context(request, access, policy, AlertPolicyForm(instance=policy, prefix="policy"))
    template = SIGNING_FRAGMENT if request.htmx else TEMPLATE
    if not policy.webhook_url:
        context["signing_error"] = (
            "No webhook is set for alerts outside budgets, so there is no secret to rotate."
        )
        return render(request, template, context, status=200 if request.htmx else 400)
    context["revealed_secret"] = webhook_secret_rotate(signer=policy)
    response = render(request, template, context)
    add_never_cache_headers(response)
    return response


@require_http_methods(["GET", "POST"])
@login_required
def alert_ack(request: AuthedRequest, org_slug: str, alert_id: str) -> HttpResponse:
    """POST acknowledges (everyone but viewers); htmx gets the updated row back. GET goes to the list."""
    access, alert = get_alert_for_user(request.user, org_slug, alert_id)
    if request.method == "GET":
        return redirect("alert_list", org_slug)
    if access.role == Role.VIEWER:
        raise PermissionDenied("Viewers cannot acknowledge alerts")
    alert_acknowledge(alert=alert, user=request.user)
    if request.htmx:
        alert = (
            AlertEvent.objects.select_related(
                "budget", "budget__project", "provider_account", "acknowledged_by"
            )
            .prefetch_related("deliveries")
            .get(pk=alert.pk)
        )
        context = {"access": access, "org": access.organization, "alert": alert, "can_ack": True}
        return render(request, f"{TEMPLATE}#alert-row", context)
    return redirect("alert_list", org_slug)
