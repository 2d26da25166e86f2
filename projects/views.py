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

from .forms import IngestTokenForm, MemberAddForm, MemberRoleForm
from .http import AuthedRequest
from .models import IngestToken, Membership, Project, Role
from .selectors import (
    OrgAccess,
    get_member_for_user,
    get_org_for_user,
    get_token_for_user,
    memberships_for_user,
    refused_choices,
)
from .services import (
    MembershipError,
    ingest_token_create,
    ingest_token_revoke,
    member_add,
    member_remove,
    member_role_change,
)


@require_GET
@login_required
def home(request: AuthedRequest) -> HttpResponse:
    """Send members to their (first) organization; explain what to do when they have none."""
    membership = memberships_for_user(request.user).first()
    if membership is None:
        return render(request, "projects/no_organization.html")
    return redirect("overview", org_slug=membership.organization.slug)


MEMBERS_TEMPLATE = "projects/members.html"


def _members_context(access: OrgAccess, add_form: MemberAddForm | None = None) -> dict[str, Any]:
    org = access.organization
    members = list(
        Membership.objects.filter(organization=org).select_related("user").order_by("user__username")
    )
    owned: dict[int, list[str]] = {}
    for owner_id, name in (
        Project.objects.filter(organization=org, owner__isnull=False)
        .order_by("name")
        .values_list("owner_id", "name")
    ):
        owned.setdefault(owner_id, []).append(name)
    return {
        "access": access,
        "org": org,
        "nav": "members",
        "members": [(m, owned.get(m.user_id, [])) for m in members],
        "admin_count": sum(1 for m in members if m.role == Role.ADMIN),
        "roles": Role.choices,
        "can_manage": access.role == Role.ADMIN,
        "add_form": add_form or MemberAddForm(),
    }


def _require_member_admin(access: OrgAccess) -> None:
    if access.role != Role.ADMIN:
        raise PermissionDenied("Only organization admins manage members.")


@require_GET
@login_required
def member_list(request: AuthedRequest, org_slug: str) -> HttpResponse:
    """Members and their roles; every member reads it, admins add, change roles and remove."""
    access = get_org_for_user(request.user, org_slug)
    return render(request, MEMBERS_TEMPLATE, _members_context(access))


@login_required
def member_create(request: AuthedRequest, org_slug: str) -> HttpResponse:
    """POST (admins): add an existing account with a role. Errors come back on the page (400)."""
    access = get_org_for_user(request.user, org_slug)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    _require_member_admin(access)
    form = MemberAddForm(request.POST)
    if form.is_valid():
        user = form.cleaned_data["who"]
        try:
            member_add(
                organization=access.organization, user=user, role=form.cleaned_data["role"], by=request.user
            )
        except MembershipError as exc:
            form.add_error("who", str(exc))
        else:
            messages.success(
                request, f"{user.get_username()} added as {Role(form.cleaned_data['role']).label}."
            )
            return redirect("member_list", org_slug=access.organization.slug)
    return render(request, MEMBERS_TEMPLATE, _members_context(access, form), status=400)


@login_required
def member_role(request: AuthedRequest, org_slug: str, username: str) -> HttpResponse:
    """POST (admins): change a member's role; it applies on their next request.

    htmx gets the member's row back (with the refusal, e.g. the last admin, in it: htmx does not
    swap 4xx); a plain POST goes back to the list with a message.
    """
    access, membership = get_member_for_user(request.user, org_slug, username)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    _require_member_admin(access)
    form = MemberRoleForm(request.POST)
    error = ""
    if not form.is_valid():
        error = "Choose one of the roles."
    else:
        try:
            member_role_change(membership=membership, role=form.cleaned_data["role"], by=request.user)
        except MembershipError as exc:
            error = str(exc)
    if membership.user_id == request.user.pk and membership.role != Role.ADMIN:
        # Demoted themselves: the page they are on is an admin page no more.
        messages.success(request, f"You are now {membership.get_role_display()}.")
        return _htmx_aware_redirect(request, "member_list", access.organization.slug)
    if request.htmx:
        # Only this member's row is rendered: it needs the projects they own, not the whole list.
        owned = list(
            Project.objects.filter(organization=access.organization, owner_id=membership.user_id)
            .order_by("name")
            .values_list("name", flat=True)
        )
        context = {
            "access": access,
            "org": access.organization,
            "roles": Role.choices,
            "can_manage": True,
            "m": membership,
            "owned": owned,
            "row_error": error,
            "row_saved": not error,
        }
        return render(request, f"{MEMBERS_TEMPLATE}#member-row", context)
    if error:
        messages.error(request, error)
    else:
        messages.success(request, f"{membership.user.get_username()} is now {membership.get_role_display()}.")
    return redirect("member_list", org_slug=access.organization.slug)


@login_required
def member_remove_view(request: AuthedRequest, org_slug: str, username: str) -> HttpResponse:
    """POST (admins): remove a member; their next request in this organization is a 404."""
    access, membership = get_member_for_user(request.user, org_slug, username)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    _require_member_admin(access)
    name = membership.user.get_username()
    try:
        orphaned = member_remove(membership=membership, by=request.user)
    except MembershipError as exc:
        messages.error(request, str(exc))
        return _htmx_aware_redirect(request, "member_list", access.organization.slug)
    note = f" {orphaned} project(s) they owned now have no owner." if orphaned else ""
    messages.success(request, f"{name} removed from {access.organization.name}.{note}")
    if membership.user_id == request.user.pk:
        home = redirect("home")
        return HttpResponse(status=204, headers={"HX-Redirect": home["Location"]}) if request.htmx else home
    return _htmx_aware_redirect(request, "member_list", access.organization.slug)


def _htmx_aware_redirect(request: AuthedRequest, name: str, org_slug: str) -> HttpResponse:
    """Redirect; htmx requests get HX-Redirect so the whole page changes, not a fragment."""
    response = redirect(name, org_slug=org_slug)
    if request.htmx:
        return HttpResponse(status=204, headers={"HX-Redirect": response["Location"]})
    return response


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
        refused_choices(form, request.user, org_slug)
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
