"""Tenancy reads: the scoping helpers every view goes through. Outsiders get 404, never 403."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404

from .models import ApiKey, ImportJob, IngestToken, Membership, Organization, Project, ProviderAccount

# Refused cross-tenant requests (ASVS 16.3.2), next to the membership changes services.py logs.
audit_log = logging.getLogger("quotaboard.audit")


def refused(
    user: AbstractBaseUser | AnonymousUser,
    org_slug: str,
    what: str,
    requested: object,
    elsewhere: QuerySet[Any],
    owner_field: str = "organization_id",
) -> Http404:
    """Return the 404 of a scoping helper whose object is not in the organization of the URL.

    When ``elsewhere`` (the object looked up without the organization filter) finds it in another
    organization, the attempt is logged first. The extra query runs on this failure path only.
    """
    try:
        owner = elsewhere.values_list(owner_field, flat=True).first()
    except ValidationError:  # not a UUID: it exists nowhere
        owner = None
    if owner is not None:
        audit_log.warning(
            "cross-tenant access refused user=%s org=%s object=%s id=%r owner_org_id=%s",
            user.get_username() if user.is_authenticated else "-",
            org_slug,
            what,
            str(requested),
            owner,
        )
    return Http404(f"No such {what}")


# How a choosable model reaches its organization, where it has no ``organization`` field itself.
_OWNER_FIELDS: dict[type[Any], str] = {User: "memberships__organization_id"}


def refused_choices(form: forms.BaseForm, user: AbstractBaseUser | AnonymousUser, org_slug: str) -> None:
    """Log the object choices of an invalid ``form`` that name another organization's rows.

    The forms limit each ModelChoiceField to the organization's rows, so such a value is already an
    "invalid choice" error; this adds the log line a swapped id in a path gets (ASVS 16.3.2). Call it
    where the form's errors are known; it queries only for fields with an invalid choice.
    """
    for name, errors in form.errors.as_data().items():
        field = form.fields.get(name)
        if not isinstance(field, forms.ModelChoiceField) or field.queryset is None:
            continue
        if not any(e.code == "invalid_choice" for e in errors):
            continue
        model = field.queryset.model
        key = field.to_field_name or "pk"
        raw = form.data.getlist(form.add_prefix(name)) if hasattr(form.data, "getlist") else []
        values = [str(v) for v in raw if v not in field.empty_values]
        try:
            elsewhere = model._default_manager.filter(**{f"{key}__in": values}).exclude(
                pk__in=field.queryset.values("pk")
            )
            what = str(model._meta.verbose_name)
            refused(
                user, org_slug, what, ",".join(values), elsewhere, _OWNER_FIELDS.get(model, "organization_id")
            )
        except (ValueError, TypeError):  # not a valid key at all: it exists nowhere
            continue


@dataclass(frozen=True)
class OrgAccess:
    """The organization a request works in, and the requesting member's role there."""

    organization: Organization
    membership: Membership

    @property
    def role(self) -> str:
        return self.membership.role


def memberships_for_user(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Membership]:
    if not user.is_authenticated:
        return Membership.objects.none()
    return (
        Membership.objects.filter(user_id=user.pk)
        .select_related("organization")
        .order_by("organization__name")
    )


def get_org_for_user(user: AbstractBaseUser | AnonymousUser, org_slug: str) -> OrgAccess:
    """Return the organization and membership, or raise 404 if the user is not a member."""
    if not user.is_authenticated:
        raise Http404("No such organization")
    membership = (
        Membership.objects.select_related("organization")
        .filter(user_id=user.pk, organization__slug=org_slug)
        .first()
    )
    if membership is None:
        # Only signed-in users get here with a real slug (login_required runs first).
        raise refused(
            user, org_slug, "organization", org_slug, Organization.objects.filter(slug=org_slug), "pk"
        )
    return OrgAccess(organization=membership.organization, membership=membership)


def get_project_for_user(
    user: AbstractBaseUser | AnonymousUser, org_slug: str, project_slug: str
) -> tuple[OrgAccess, Project]:
    access = get_org_for_user(user, org_slug)
    project = Project.objects.filter(organization=access.organization, slug=project_slug).first()
    if project is None:
        raise refused(user, org_slug, "project", project_slug, Project.objects.filter(slug=project_slug))
    return access, project


def get_account_for_user(
    user: AbstractBaseUser | AnonymousUser, org_slug: str, account_slug: str
) -> tuple[OrgAccess, ProviderAccount]:
    access = get_org_for_user(user, org_slug)
    account = ProviderAccount.objects.filter(organization=access.organization, slug=account_slug).first()
    if account is None:
        elsewhere = ProviderAccount.objects.filter(slug=account_slug)
        raise refused(user, org_slug, "provider account", account_slug, elsewhere)
    return access, account


def get_key_for_user(
    user: AbstractBaseUser | AnonymousUser, org_slug: str, key_public_id: str
) -> tuple[OrgAccess, ApiKey]:
    access = get_org_for_user(user, org_slug)
    try:
        key = ApiKey.objects.filter(organization=access.organization, public_id=key_public_id).first()
    except ValidationError:  # not a UUID
        key = None
    if key is None:
        raise refused(
            user, org_slug, "API key", key_public_id, ApiKey.objects.filter(public_id=key_public_id)
        )
    return access, key


def _by_public_id(qs: QuerySet[Any], public_id: object) -> Any:
    try:
        return qs.filter(public_id=public_id).first()
    except ValidationError:  # not a UUID
        return None


def get_token_for_user(
    user: AbstractBaseUser | AnonymousUser, org_slug: str, token_public_id: object
) -> tuple[OrgAccess, IngestToken]:
    access = get_org_for_user(user, org_slug)
    token = _by_public_id(IngestToken.objects.filter(organization=access.organization), token_public_id)
    if token is None:
        elsewhere = IngestToken.objects.filter(public_id=str(token_public_id))
        raise refused(user, org_slug, "ingest token", token_public_id, elsewhere)
    return access, token


def get_import_for_user(
    user: AbstractBaseUser | AnonymousUser, org_slug: str, import_public_id: object
) -> tuple[OrgAccess, ImportJob]:
    access = get_org_for_user(user, org_slug)
    job = _by_public_id(
        ImportJob.objects.filter(organization=access.organization).select_related("provider_account"),
        import_public_id,
    )
    if job is None:
        raise refused(
            user,
            org_slug,
            "import",
            import_public_id,
            ImportJob.objects.filter(public_id=str(import_public_id)),
        )
    return access, job


def get_member_for_user(
    user: AbstractBaseUser | AnonymousUser, org_slug: str, username: str
) -> tuple[OrgAccess, Membership]:
    """Return the requester's access and another member of the same organization, by username (404 if
    either is not a member)."""
    access = get_org_for_user(user, org_slug)
    membership = (
        Membership.objects.select_related("user", "organization")
        .filter(organization=access.organization, user__username=username)
        .first()
    )
    if membership is None:
        elsewhere = Membership.objects.filter(user__username=username)
        raise refused(user, org_slug, "member", username, elsewhere)
    return access, membership
