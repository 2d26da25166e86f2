"""Tenancy writes: members and roles; ingest tokens (create, revoke, authenticate, rate-limit)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from .models import IngestToken, Membership, Organization, Project, Role

# Who changed which membership, for the organization's admins and the operator (ASVS 16.3).
audit_log = logging.getLogger("quotaboard.audit")

TOKEN_PREFIX = "qbt_"
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
RATE_WINDOW_SECONDS = 60


class MembershipError(Exception):
    """A membership change refused with a reason the page shows (e.g. it would leave no admin)."""


def _admins_left_after(membership: Membership) -> int:
    """Lock the organization's row, then count the admins other than ``membership``'s user.

    The lock serialises member changes within one organization, so two admins demoting each
    other at the same moment cannot both succeed and leave it with nobody to manage it.
    """
    Organization.objects.select_for_update().filter(pk=membership.organization_id).first()
    return (
        Membership.objects.filter(organization_id=membership.organization_id, role=Role.ADMIN)
        .exclude(pk=membership.pk)
        .count()
    )


@transaction.atomic
def member_add(*, organization: Organization, user: User, role: str, by: User) -> Membership:
    """Make an existing, active user a member with ``role``; MembershipError if they already are."""
    if not user.is_active:
        raise MembershipError(f"{user.get_username()} is deactivated; reactivate the account first.")
    membership, created = Membership.objects.get_or_create(
        user=user, organization=organization, defaults={"role": role}
    )
    if not created:
        raise MembershipError(f"{user.get_username()} is already a member ({membership.get_role_display()}).")
    audit_log.info(
        "member added org=%s user=%s role=%s by=%s",
        organization.slug,
        user.get_username(),
        role,
        by.get_username(),
    )
    return membership


@transaction.atomic
def member_role_change(*, membership: Membership, role: str, by: User) -> Membership:
    """Change a member's role; it applies on their next request. Refuses to demote the last admin."""
    old = membership.role
    if old == role:
        return membership
    if old == Role.ADMIN and _admins_left_after(membership) == 0:
        raise MembershipError(
            f"{membership.user.get_username()} is the only admin: make someone else admin first."
        )
    membership.role = role
    membership.save(update_fields=["role"])
    audit_log.info(
        "member role changed org=%s user=%s from=%s to=%s by=%s",
        membership.organization.slug,
        membership.user.get_username(),
        old,
        role,
        by.get_username(),
    )
    return membership


@transaction.atomic
def member_remove(*, membership: Membership, by: User) -> int:
    """Remove a member: their next request in this organization is a 404. Refuses the last admin.

    Returns how many of the organization's projects they owned; those projects are left without
    an owner (their budgets stay, admins manage them).
    """
    if membership.role == Role.ADMIN and _admins_left_after(membership) == 0:
        raise MembershipError(
            f"{membership.user.get_username()} is the only admin: make someone else admin first."
        )
    orphaned = Project.objects.filter(
        organization_id=membership.organization_id, owner_id=membership.user_id
    ).update(owner=None)
    membership.delete()
    audit_log.info(
        "member removed org=%s user=%s role=%s by=%s projects_unowned=%d",
        membership.organization.slug,
        membership.user.get_username(),
        membership.role,
        by.get_username(),
        orphaned,
    )
    return orphaned


def _hash_secret(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ingest_token_create(
    *,
    organization: Organization,
    name: str,
    created_by: User | None,
    project: Project | None = None,
    expires_at: datetime | None = None,
) -> tuple[IngestToken, str]:
    """Create a token and return it with its full secret, which is never stored and cannot be shown again.

    The token reads ``qbt_<8 chars>_<43 chars>``; the first 12 characters are its public prefix.
    """
    if project is not None and project.organization_id != organization.pk:
        raise ValueError("project belongs to another organization")
    while True:
        prefix = TOKEN_PREFIX + "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))
        if not IngestToken.objects.filter(prefix=prefix).exists():
            break
    plaintext = f"{prefix}_{secrets.token_urlsafe(32)}"
    token = IngestToken.objects.create(
        organization=organization,
        project=project,
        name=name,
        prefix=prefix,
        secret_hash=_hash_secret(plaintext),
        created_by=created_by,
        expires_at=expires_at,
    )
    return token, plaintext


def ingest_token_revoke(*, token: IngestToken) -> None:
    """Revoke a token from now on; revoking twice keeps the first time."""
    IngestToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db(fields=["revoked_at"])


def ingest_token_authenticate(plaintext: str, *, now: datetime | None = None) -> IngestToken | None:
    """Return the live token for a presented secret, or None (unknown, wrong secret, revoked, expired).

    Looks the token up by its public prefix, then compares hashes in constant time.
    """
    if not plaintext.startswith(TOKEN_PREFIX) or len(plaintext) > 200:
        return None
    prefix = plaintext[: len(TOKEN_PREFIX) + 8]
    token = IngestToken.objects.select_related("organization", "project").filter(prefix=prefix).first()
    if token is None:
        # Spend the same hashing work as a hit, so timing does not tell whether a prefix exists.
        hmac.compare_digest(_hash_secret(plaintext), "0" * 64)
        return None
    if not hmac.compare_digest(_hash_secret(plaintext), token.secret_hash):
        return None
    if not token.is_usable_at(now or timezone.now()):
        return None
    return token


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int


def ingest_token_hit(*, token: IngestToken, now: datetime | None = None) -> RateDecision:
    """Count one request in the token's fixed one-minute window and return whether it may proceed.

    One UPDATE increments the count (or restarts the window), so concurrent requests in several web
    processes share one count; it also stamps ``last_used_at``.
    """
    now = now or timezone.now()
    limit = settings.QB_API_RATE_LIMIT_PER_MINUTE
    epoch = int(now.timestamp())
    window = datetime.fromtimestamp(epoch - epoch % RATE_WINDOW_SECONDS, tz=UTC)
    IngestToken.objects.filter(pk=token.pk).update(
        rate_window_count=Case(
            When(rate_window_start=window, then=F("rate_window_count") + 1), default=Value(1)
        ),
        rate_window_start=window,
        last_used_at=now,
    )
    count = IngestToken.objects.filter(pk=token.pk).values_list("rate_window_count", flat=True).first() or 0
    retry_after = max(1, int((window + timedelta(seconds=RATE_WINDOW_SECONDS) - now).total_seconds()) + 1)
    return RateDecision(
        allowed=count <= limit, limit=limit, remaining=max(0, limit - count), retry_after=retry_after
    )
