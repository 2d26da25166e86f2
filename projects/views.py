from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from .http import AuthedRequest
from .selectors import memberships_for_user


@require_GET
@login_required
def home(request: AuthedRequest) -> HttpResponse:
    """Send members to their (first) organization; explain what to do when they have none."""
    membership = memberships_for_user(request.user).first()
    if membership is None:
        return render(request, "projects/no_organization.html")
    return redirect("overview", org_slug=membership.organization.slug)
