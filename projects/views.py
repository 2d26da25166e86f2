from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET

from .forms import IngestTokenForm
from .http import AuthedRequest
from .models import IngestToken
from .selectors import OrgAccess, get_org_for_user, get_token_for_user, memberships_for_user
from .services import ingest_token_create, ingest_token_revoke


@require_GET
@login_required
def home(request: AuthedRequest) -> HttpResponse:
    """Send members to their (first) organization; explain what to do when they have none."""
    membership = memberships_for_user(request.user).first()
    if membership is None:
        return render(request, "projects/no_organization.html")
    return redirect("overview", org_slug=membership.organization.slug)


TOKENS_TEMPLATE = "projects/tokens.html"


def _tokens_context(access: OrgAccess, form: IngestTokenForm) -> dict[str, Any]:
    org = access.organization
    return {
        "access": access,
        "org": org,
        "nav": "tokens",
        "tokens": IngestToken.objects.filter(organization=org).select_related("project", "created_by"),
        "form": form,
        "can_manage": access.membership.can_manage_accounts,
        "now": timezone.now(),
    }


@require_GET
@login_required
def token_list(request: AuthedRequest, org_slug: str) -> HttpResponse:
    """Ingest tokens of the organization: prefix, scope, last use; admins create and revoke."""
    access = get_org_for_user(request.user, org_slug)
    return render(request, TOKENS_TEMPLATE, _tokens_context(access, IngestTokenForm(access.organization)))


@login_required
def token_create(request: AuthedRequest, org_slug: str) -> HttpResponse:
    """Create a token and show its secret once (the page is not cached and the secret is not stored)."""
    access = get_org_for_user(request.user, org_slug)
    # POST only, checked after the org lookup so that outsiders get 404 whatever the method.
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not access.membership.can_manage_accounts:
        raise PermissionDenied("Only organization admins create ingest tokens.")
    form = IngestTokenForm(access.organization, request.POST)
    if not form.is_valid():
        return render(request, TOKENS_TEMPLATE, _tokens_context(access, form), status=400)
    days = form.cleaned_data["expires_in_days"]
    token, secret = ingest_token_create(
        organization=access.organization,
        name=form.cleaned_data["name"],
        project=form.cleaned_data["project"],
        created_by=request.user,
        expires_at=timezone.now() + timedelta(days=days) if days else None,
    )
    context = _tokens_context(access, IngestTokenForm(access.organization))
    context.update({"new_token": token, "new_secret": secret})
    response = render(request, TOKENS_TEMPLATE, context)
    add_never_cache_headers(response)
    return response


@login_required
def token_revoke(request: AuthedRequest, org_slug: str, token_id: str) -> HttpResponse:
    """Revoke a token; pushes with it get 401 from the next request on."""
    access, token = get_token_for_user(request.user, org_slug, token_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not access.membership.can_manage_accounts:
        raise PermissionDenied("Only organization admins revoke ingest tokens.")
    ingest_token_revoke(token=token)
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("token_list", org_slug=access.organization.slug)


def _client_address(request: HttpRequest) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy rewrites it.
    return str(request.META.get("REMOTE_ADDR") or "unknown")


def _failure_keys(request: HttpRequest) -> list[tuple[str, int]]:
    username = (request.POST.get("username") or "").strip().lower()
    user_digest = hashlib.sha256(username.encode()).hexdigest()[:32]
    return [
        (f"login-fail:user:{user_digest}", settings.LOGIN_FAILURE_LIMIT_PER_USER),
        (f"login-fail:ip:{_client_address(request)}", settings.LOGIN_FAILURE_LIMIT_PER_IP),
    ]


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
def login_view(request: HttpRequest) -> HttpResponseBase:
    """Django's LoginView, throttled: after too many failures per user or address, answer 429.

    The answer is the same whether or not the username exists, and a correct password is refused
    too while the lockout lasts, so guessing cannot continue through it.
    """
    if request.method == "POST":
        keys = _failure_keys(request)
        if any(cache.get(key, 0) >= limit for key, limit in keys):
            minutes = max(1, settings.LOGIN_FAILURE_WINDOW_SECONDS // 60)
            locked = render(request, "registration/login.html", {"locked_minutes": minutes}, status=429)
            locked["Retry-After"] = str(settings.LOGIN_FAILURE_WINDOW_SECONDS)
            return locked
        response = auth_views.LoginView.as_view(redirect_authenticated_user=True)(request)
        if response.status_code == 200:  # the form was re-rendered: wrong credentials
            for key, _limit in keys:
                cache.add(key, 0, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS)
                cache.incr(key)
        return response
    return auth_views.LoginView.as_view(redirect_authenticated_user=True)(request)
