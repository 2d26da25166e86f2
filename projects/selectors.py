"""Tenancy reads: the scoping helpers every view goes through. Outsiders get 404, never 403."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404

from .models import ApiKey, ImportJob, IngestToken, Membership, Organization, Project, ProviderAccount


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
        raise Http404("No such organization")
    return OrgAccess(organization=membership.organization, membership=membership)


def get_project_for_user(
    user: AbstractBaseUser | AnonymousUser, org_slug: str, project_slug: str
) -> tuple[OrgAccess, Project]:
    access = get_org_for_user(user, org_slug)
    project = Project.objects.filter(organization=access.organization, slug=project_slug).first()
    if project is None:
        raise Http404("No such project")
    return access, project


def get_account_for_user(
    user: AbstractBaseUser | AnonymousUser, org_slug: str, account_slug: str
) -> tuple[OrgAccess, ProviderAccount]:
    access = get_org_for_user(user, org_slug)
    account = ProviderAccount.objects.filter(organization=access.organization, slug=account_slug).first()
    if account is None:
        raise Http404("No such provider account")
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
        raise Http404("No such API key")
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
        raise Http404("No such ingest token")
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
        raise Http404("No such import")
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
        raise Http404("No such member")
    return access, membership
