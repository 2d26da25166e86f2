"""Alert history with acknowledge."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from projects.http import AuthedRequest
from projects.models import Role
from projects.selectors import get_org_for_user

from .forms import AlertPolicyForm
from .models import AlertEvent, AlertPolicy
from .selectors import alerts_for_org, get_alert_for_user
from .services.alerts import alert_acknowledge, alert_policy_for

TEMPLATE = "billing/alert_list.html"


@require_http_methods(["GET", "POST"])
@login_required
def alert_list(request: AuthedRequest, org_slug: str) -> HttpResponse:
    """The newest 200 alerts (or only open ones with ?open=1), with delivery status per channel; admins
    also get the organization's alert settings (POST saves them)."""
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
            form.save()
            return redirect("alert_list", org_slug)
    open_only = request.GET.get("open") == "1"
    context = {
        "policy": policy,
        "policy_form": form,
        "access": access,
        "org": access.organization,
        "nav": "alerts",
        "alerts": alerts_for_org(organization=access.organization, open_only=open_only),
        "open_only": open_only,
        "can_ack": access.role != Role.VIEWER,
    }
    return render(request, TEMPLATE, context)


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
