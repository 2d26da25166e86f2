"""Tenancy: organizations, members and roles, projects, provider accounts and API keys."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import datetime
from functools import cached_property

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from . import encryption
from .money import DEFAULT_QUOTA_PER_UNIT, MoneyField


def validate_timezone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"{name!r} is not a known IANA time zone") from exc


def validate_currency(code: str) -> None:
    if len(code) != 3 or not code.isalpha() or not code.isupper():
        raise ValidationError("use a three-letter ISO 4217 code such as USD")


class Organization(models.Model):
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True)
    # Days and months in every report are this zone's, so month-end close never shifts spend.
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    currency = models.CharField(max_length=3, default="USD", validators=[validate_currency])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @cached_property
    def zoneinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    FINANCE = "finance", "Finance"
    OWNER = "owner", "Project owner"
    VIEWER = "viewer", "Viewer"


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="membership_unique_user_org"),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"

    @property
    def sees_whole_organization(self) -> bool:
        """Admins and finance see every project's money; owners and viewers read too, but manage less."""
        return self.role in {Role.ADMIN, Role.FINANCE}

    @property
    def can_manage_accounts(self) -> bool:
        return self.role == Role.ADMIN

    def can_manage_budget_of(self, project: Project | None) -> bool:
        """Admins manage every budget; project owners only their own projects' budgets."""
        if self.role == Role.ADMIN:
            return True
        return project is not None and self.role == Role.OWNER and project.owner_id == self.user_id


class Environment(models.TextChoices):
    PRODUCTION = "production", "Production"
    STAGING = "staging", "Staging"
    DEVELOPMENT = "development", "Development"
    TESTING = "testing", "Testing"
    INTERNAL = "internal", "Internal"


class Project(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60)
    environment = models.CharField(max_length=16, choices=Environment.choices, default=Environment.PRODUCTION)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_projects",
    )
    archived = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "slug"], name="project_unique_slug_per_org"),
            models.CheckConstraint(
                condition=Q(environment__in=Environment.values), name="project_environment_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ProviderKind(models.TextChoices):
    NEWAPI = "newapi", "New API"
    ONEAPI = "oneapi", "One API"
    OPENAI = "openai", "OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"
    DEEPSEEK = "deepseek", "DeepSeek"
    OPENROUTER = "openrouter", "OpenRouter"


GATEWAY_KINDS = frozenset({ProviderKind.NEWAPI, ProviderKind.ONEAPI})


class AccountStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    NEEDS_ATTENTION = "needs_attention", "Needs attention"
    PAUSED = "paused", "Paused"


class ProviderAccount(models.Model):
    """An account at an LLM provider or gateway, with the credential that reads its balance and usage.

    Lives in ``projects`` (tenancy owns credentials) so that usage ingestion can reference it
    without importing billing.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="provider_accounts")
    kind = models.CharField(max_length=16, choices=ProviderKind.choices)
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60)
    base_url = models.URLField(max_length=300)
    # Fernet token of the access token / admin key. Read it with get_credential(); never rendered.
    credential_encrypted = models.TextField(blank=True, editable=False)
    credential_hint = models.CharField(max_length=24, blank=True, editable=False)
    newapi_user_id = models.PositiveIntegerField(
        null=True, blank=True, help_text="New API only: sent as the New-Api-User header."
    )
    # Gateways count in quota units; 500,000 per USD unless the reseller changed the scale.
    quota_per_unit = models.PositiveBigIntegerField(default=DEFAULT_QUOTA_PER_UNIT)
    currency = models.CharField(max_length=3, default="USD")
    status = models.CharField(max_length=20, choices=AccountStatus.choices, default=AccountStatus.ACTIVE)
    status_message = models.CharField(max_length=500, blank=True)
    # Per-account overrides of the global schedule; empty means the settings' default.
    balance_interval_minutes = models.PositiveIntegerField(null=True, blank=True)
    usage_interval_minutes = models.PositiveIntegerField(null=True, blank=True)
    # Low-balance alert (billing.services.alerts): under this many days of runway, or under this
    # amount in the account's own currency. Per account: a $20 floor is nothing on one account and
    # everything on another.
    low_balance_runway_days = models.PositiveIntegerField(
        default=7, help_text="Alert when the balance lasts fewer days than this at the 7-day burn rate."
    )
    low_balance_amount = MoneyField(
        null=True, blank=True, help_text="Also alert below this balance (account currency); empty: no floor."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "slug"], name="account_unique_slug_per_org"),
            models.CheckConstraint(condition=Q(kind__in=ProviderKind.values), name="account_kind_valid"),
            models.CheckConstraint(condition=Q(quota_per_unit__gt=0), name="account_quota_per_unit_positive"),
            models.CheckConstraint(
                condition=Q(low_balance_runway_days__gte=1)
                & (Q(low_balance_amount__isnull=True) | Q(low_balance_amount__gte=0)),
                name="account_low_balance_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def __repr__(self) -> str:
        return f"<ProviderAccount {self.pk} {self.kind} {self.slug}>"

    @property
    def is_gateway(self) -> bool:
        return self.kind in GATEWAY_KINDS

    def set_credential(self, plaintext: str) -> None:
        self.credential_encrypted = encryption.encrypt(plaintext) if plaintext else ""
        self.credential_hint = encryption.redact(plaintext)

    def get_credential(self) -> str:
        return encryption.decrypt(self.credential_encrypted) if self.credential_encrypted else ""


class KeyStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    REVOKED = "revoked", "Revoked"
    UNKNOWN = "unknown", "Unknown"


class ApiKey(models.Model):
    """A provider API key (or gateway token) that usage is attributed to; the secret itself is never stored."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    project = models.ForeignKey(
        Project,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="api_keys",
        help_text="Empty means unassigned: its spend shows under 'Unassigned'.",
    )
    provider_account = models.ForeignKey(
        ProviderAccount, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=200)
    # The provider's id for the key (OpenAI key_..., Anthropic apikey_...) or a gateway token name.
    external_id = models.CharField(max_length=200)
    redacted_hint = models.CharField(max_length=40, blank=True)
    status = models.CharField(max_length=16, choices=KeyStatus.choices, default=KeyStatus.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider_account", "external_id"], name="apikey_unique_external_id"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == KeyStatus.ACTIVE


class IngestToken(models.Model):
    """A bearer token for the push and read API, for one organization, optionally one project.

    Only the sha256 of the secret is stored; the full token is shown once, when it is created.
    ``prefix`` (``qbt_`` + 8 characters) is the lookup key and what lists show.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="ingest_tokens")
    project = models.ForeignKey(
        Project,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="ingest_tokens",
        help_text="Empty: the token may write to every project of the organization.",
    )
    name = models.CharField(max_length=120)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # Fixed-window rate limit, counted here so that every web process shares one count.
    rate_window_start = models.DateTimeField(null=True, blank=True, editable=False)
    rate_window_count = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def __repr__(self) -> str:
        return f"<IngestToken {self.pk} {self.prefix}>"

    def is_usable_at(self, moment: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > moment)


class IdempotencyState(models.TextChoices):
    IN_FLIGHT = "in_flight", "In flight"
    DONE = "done", "Done"


class IdempotencyRecord(models.Model):
    """An ``Idempotency-Key`` seen on the push API: the body's hash and the first response, for replay.

    The response is saved in the same transaction as the rows it reports, so a crash between the
    two leaves neither (OpenMeter #5118: a key claimed before the write commits loses the write).
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    body_sha256 = models.CharField(max_length=64)
    state = models.CharField(
        max_length=16, choices=IdempotencyState.choices, default=IdempotencyState.IN_FLIGHT
    )
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.BinaryField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "key"], name="idempotency_unique_key_per_org"),
        ]
        indexes = [
            # Pruning old keys (idempotency_prune).
            models.Index(fields=["created_at"], name="idempotency_created"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.state})"


class ImportFormat(models.TextChoices):
    CSV = "csv", "CSV (Quotaboard columns)"
    JSONL = "jsonl", "JSON Lines (Quotaboard fields)"
    NEWAPI = "newapi", "New API / One API log export (JSON Lines)"
    OPENAI = "openai", "OpenAI usage export (CSV or JSON Lines)"


class ImportStatus(models.TextChoices):
    PENDING = "pending", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ImportJob(models.Model):
    """One uploaded usage file and its progress: bytes and rows read, rows stored, rows rejected.

    Lives in ``projects`` next to the other tenancy-owned bookkeeping so that ``usage`` migrations
    stay with the ingestion work; the import itself is ``usage.imports``.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="import_jobs")
    provider_account = models.ForeignKey(
        ProviderAccount, null=True, blank=True, on_delete=models.SET_NULL, related_name="import_jobs"
    )
    format = models.CharField(max_length=16, choices=ImportFormat.choices)
    original_name = models.CharField(max_length=255)
    # Relative to settings.QB_IMPORT_DIR; never a user-chosen path.
    stored_name = models.CharField(max_length=100, editable=False)
    status = models.CharField(max_length=16, choices=ImportStatus.choices, default=ImportStatus.PENDING)
    bytes_total = models.BigIntegerField(default=0)
    bytes_processed = models.BigIntegerField(default=0)
    rows_processed = models.BigIntegerField(default=0)
    rows_good = models.BigIntegerField(default=0)
    rows_bad = models.BigIntegerField(default=0)
    rows_new = models.BigIntegerField(default=0)
    rows_duplicate = models.BigIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(format__in=ImportFormat.values), name="import_format_valid"),
            models.CheckConstraint(condition=Q(status__in=ImportStatus.values), name="import_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in {ImportStatus.DONE, ImportStatus.FAILED}

    @property
    def percent(self) -> int:
        if self.status == ImportStatus.DONE:
            return 100
        if not self.bytes_total:
            return 0
        return min(99, self.bytes_processed * 100 // self.bytes_total)
