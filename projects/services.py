"""Tenancy writes: ingest tokens (create, revoke, authenticate, rate-limit)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Case, F, Value, When
from django.utils import timezone

from .models import IngestToken, Organization, Project

TOKEN_PREFIX = "qbt_"
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
RATE_WINDOW_SECONDS = 60


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
