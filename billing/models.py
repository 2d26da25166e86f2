"""Balances, top-ups and budgets."""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from projects import encryption
from projects.models import Organization, Project, ProviderAccount
from projects.money import MoneyField


def default_thresholds() -> list[int]:
    return [50, 80, 100]


class SnapshotSource(models.TextChoices):
    PROVIDER = "provider", "Provider API"
    MANUAL = "manual", "Entered from the provider console"


class BalanceSnapshot(models.Model):
    """A balance reading at one instant. Gateways keep their raw quota next to the converted amount."""

    provider_account = models.ForeignKey(ProviderAccount, on_delete=models.CASCADE, related_name="balances")
    taken_at = models.DateTimeField()
    source = models.CharField(max_length=16, choices=SnapshotSource.choices, default=SnapshotSource.PROVIDER)
    raw_quota = models.BigIntegerField(null=True, blank=True)
    raw_used_quota = models.BigIntegerField(null=True, blank=True)
    request_count = models.BigIntegerField(null=True, blank=True)
    remaining = MoneyField()
    used = MoneyField(null=True, blank=True)
    # DeepSeek splits its balance; OpenRouter reports credits bought.
    granted = MoneyField(null=True, blank=True)
    topped_up = MoneyField(null=True, blank=True)
    total_credits = MoneyField(null=True, blank=True)
    currency = models.CharField(max_length=3, default="USD")
    is_available = models.BooleanField(null=True, blank=True)

    class Meta:
        ordering = ["-taken_at"]
        constraints = [
            # DeepSeek returns one balance per currency, so currency is part of the key.
            models.UniqueConstraint(
                fields=["provider_account", "taken_at", "currency", "source"], name="balance_unique_reading"
            ),
        ]
        indexes = [
            # latest_balances and the balance history chart: newest readings per account.
            models.Index(fields=["provider_account", "-taken_at"], name="balance_account_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.provider_account_id} {self.remaining} {self.currency} @ {self.taken_at:%Y-%m-%d %H:%M}"


class TopUpStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    CREDITED = "credited", "Credited"
    FAILED = "failed", "Failed"
    REFUNDED = "refunded", "Refunded"


class TopUpSource(models.TextChoices):
    MANUAL = "manual", "Entered by hand"
    PROVIDER = "provider", "Provider history"
    IMPORT = "import", "File import"
    GRANT = "grant", "Granted credit"


class TopUp(models.Model):
    provider_account = models.ForeignKey(ProviderAccount, on_delete=models.CASCADE, related_name="topups")
    amount = MoneyField()
    currency = models.CharField(max_length=3, default="USD")
    bonus = MoneyField(default=0, help_text="Bonus credit or voucher that came with the payment.")
    status = models.CharField(max_length=16, choices=TopUpStatus.choices, default=TopUpStatus.PENDING)
    source = models.CharField(max_length=16, choices=TopUpSource.choices, default=TopUpSource.MANUAL)
    order_ref = models.CharField(max_length=200, blank=True)
    payment_method = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField()
    credited_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="OpenAI credits expire a year after purchase."
    )
    note = models.CharField(max_length=300, blank=True)
    # Auto-recharges count toward the rule's monthly limit; manual top-ups do not.
    is_auto_recharge = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider_account", "order_ref"],
                condition=~Q(order_ref=""),
                name="topup_unique_order_ref",
            ),
            models.CheckConstraint(condition=Q(amount__gte=0) & Q(bonus__gte=0), name="topup_nonnegative"),
            models.CheckConstraint(condition=Q(status__in=TopUpStatus.values), name="topup_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} ({self.status})"


WEBHOOK_SECRET_PREFIX = "qbwh_"


def new_webhook_secret() -> str:
    """Return a fresh signing secret: ``qbwh_`` and 43 url-safe characters (256 random bits)."""
    return WEBHOOK_SECRET_PREFIX + secrets.token_urlsafe(32)


def webhook_secret_hint(secret: str) -> str:
    """Return what a page may show of a signing secret once it has been revealed: 'qbwh_…abcd'."""
    if not secret:
        return ""
    prefix = WEBHOOK_SECRET_PREFIX if secret.startswith(WEBHOOK_SECRET_PREFIX) else ""
    return f"{prefix}…{secret[-4:]}"


class WebhookSigning(models.Model):
    """The key that signs one webhook's bodies (HMAC-SHA256), Fernet-encrypted at rest.

    The plaintext is shown once, in the response that creates it (webhook configured, or rotated);
    afterwards pages show only ``webhook_secret_hint``. A secret with no hint was made where nobody
    could see it (before reveal existed, or on first delivery): rotating is the way to get one.
    """

    # Fernet token of the HMAC key; read with webhook_secret(), never rendered.
    webhook_secret_encrypted = models.TextField(blank=True, editable=False)
    webhook_secret_hint = models.CharField(max_length=16, blank=True, editable=False)

    class Meta:
        abstract = True

    def set_webhook_secret(self, plaintext: str) -> None:
        """Store ``plaintext`` encrypted (or clear it with ""); the caller saves."""
        self.webhook_secret_encrypted = encryption.encrypt(plaintext) if plaintext else ""
        self.webhook_secret_hint = webhook_secret_hint(plaintext)

    def webhook_secret(self) -> str:
        """Return the signing secret, creating (and saving) one on first use.

        Compare-and-set: two workers delivering at once agree on one secret instead of each signing
        with a key the other overwrites.
        """
        if not self.webhook_secret_encrypted:
            secret = new_webhook_secret()
            manager = type(self)._default_manager
            # No hint: nobody has seen this secret, and the page says to rotate to get one to copy.
            manager.filter(pk=self.pk, webhook_secret_encrypted="").update(
                webhook_secret_encrypted=encryption.encrypt(secret), webhook_secret_hint=""
            )
            self.webhook_secret_encrypted, self.webhook_secret_hint = (
                manager.filter(pk=self.pk)
                .values_list("webhook_secret_encrypted", "webhook_secret_hint")
                .get()
            )
        return encryption.decrypt(self.webhook_secret_encrypted)


class Budget(WebhookSigning):
    """A monthly (and optionally daily) spending limit for an organization or one of its projects.

    Its webhook (if any) is signed with its own secret, so rotating one budget's secret, or revealing
    it to a project owner, touches no other budget's receiver.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="budgets")
    project = models.ForeignKey(
        Project,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="budgets",
        help_text="Empty: the whole organization.",
    )
    name = models.CharField(max_length=120, blank=True)
    monthly_amount = MoneyField()
    daily_amount = MoneyField(null=True, blank=True)
    currency = models.CharField(max_length=3, default="USD")
    model = models.CharField(
        max_length=200, blank=True, help_text="Limit the budget to one model; empty for all."
    )
    thresholds = models.JSONField(
        default=default_thresholds, help_text="Percentages that alert, once per period."
    )
    recipients = models.TextField(blank=True, help_text="Extra e-mail addresses, one per line.")
    notify_members = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="+",
        help_text="Members who get this budget's alerts.",
    )
    webhook_url = models.URLField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(monthly_amount__gt=0), name="budget_monthly_positive"),
        ]

    def __str__(self) -> str:
        scope = self.project.name if self.project_id and self.project else "Organization"
        return self.name or f"{scope} budget"


class AutoRechargeRule(models.Model):
    """The provider's auto-recharge setting, mirrored so the ledger can say what it will add this month.

    Below ``threshold`` the provider charges ``amount``; ``monthly_limit`` caps auto-recharges per
    calendar month (manual top-ups do not count). Rules: ``billing.rules.auto_recharge_month``.
    """

    provider_account = models.OneToOneField(
        ProviderAccount, on_delete=models.CASCADE, related_name="auto_recharge_rule"
    )
    enabled = models.BooleanField(default=True)
    threshold = MoneyField()
    amount = MoneyField()
    monthly_limit = MoneyField(null=True, blank=True, help_text="Empty: no monthly limit.")
    currency = models.CharField(max_length=3, default="USD")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(threshold__gte=0)
                & Q(amount__gt=0)
                & (Q(monthly_limit__isnull=True) | Q(monthly_limit__gte=0)),
                name="auto_recharge_amounts_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"auto-recharge {self.amount} below {self.threshold} {self.currency}"


class AlertPolicy(WebhookSigning):
    """Per-organization alert settings: anomaly and staleness limits, and the webhook (with its own
    signing secret) for alerts that belong to no budget.

    Low-balance thresholds are per provider account (``ProviderAccount.low_balance_*``).
    """

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="alert_policy")
    # A day whose spend exceeds this many times the trailing 14-day average is an anomaly.
    anomaly_factor = models.DecimalField(max_digits=6, decimal_places=2, default=3)
    anomaly_min_amount = MoneyField(default=1, help_text="Ignore anomalies on days smaller than this.")
    stale_after_hours = models.PositiveIntegerField(default=6)
    webhook_url = models.URLField(blank=True, help_text="Receives alerts that belong to no budget.")
    recipients = models.TextField(blank=True, help_text="Extra e-mail addresses, one per line.")

    class Meta:
        verbose_name_plural = "alert policies"

    def __str__(self) -> str:
        return f"Alert policy of {self.organization_id}"


class AlertKind(models.TextChoices):
    BUDGET_THRESHOLD = "budget_threshold", "Budget threshold"
    BUDGET_DAILY_THRESHOLD = "budget_daily", "Daily budget threshold"
    BUDGET_FORECAST = "budget_forecast", "Forecast to exceed"
    LOW_BALANCE = "low_balance", "Low balance"
    SPEND_ANOMALY = "spend_anomaly", "Spend anomaly"
    STALE_DATA = "stale_data", "Stale data"


class AlertEvent(models.Model):
    """One alert, raised once per (budget, kind, period, threshold) or (account, kind, period).

    The unique constraints are the dedupe: concurrent evaluations race on the INSERT and the
    loser gets an IntegrityError, which ``alert_event_record`` turns into "already raised".
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=20, choices=AlertKind.choices)
    budget = models.ForeignKey(Budget, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts")
    provider_account = models.ForeignKey(
        ProviderAccount, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    # "2026-11" for monthly budgets, "2026-11-23" for daily checks (organization's local dates).
    period = models.CharField(max_length=10)
    threshold = models.PositiveSmallIntegerField(default=0)
    severity = models.CharField(max_length=8, default="warning")
    title = models.CharField(max_length=200)
    message = models.TextField()
    # Display strings only (money already formatted or as exact decimal strings).
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "kind", "period", "threshold"],
                condition=Q(budget__isnull=False),
                name="alert_once_per_budget_period_threshold",
            ),
            models.UniqueConstraint(
                fields=["provider_account", "kind", "period"],
                condition=Q(budget__isnull=True, provider_account__isnull=False),
                name="alert_once_per_account_kind_period",
            ),
            models.CheckConstraint(condition=Q(kind__in=AlertKind.values), name="alert_kind_valid"),
        ]
        indexes = [
            # alert_list: an organization's newest alerts.
            models.Index(fields=["organization", "-created_at"], name="alert_org_recent"),
        ]

    def __str__(self) -> str:
        return self.title


class DeliveryChannel(models.TextChoices):
    EMAIL = "email", "E-mail"
    WEBHOOK = "webhook", "Webhook"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class AlertDelivery(models.Model):
    """One channel's delivery of one alert. ``public_id`` is the delivery id every retry resends."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    alert = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=8, choices=DeliveryChannel.choices)
    target = models.TextField(help_text="Comma-separated e-mail addresses, or the webhook URL.")
    status = models.CharField(max_length=8, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["alert", "channel"], name="delivery_once_per_channel"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} for alert {self.alert_id} ({self.status})"


# --- Month close (issue 6): frozen statements, their lines, and the audit trail -----------------------


class StatementStatus(models.TextChoices):
    CLOSED = "closed", "Closed"
    REOPENED = "reopened", "Reopened"


class MonthStatement(models.Model):
    """One close of one organization month: the frozen figures, never edited after the close.

    ``month`` is the first day of the organization's local month. Closing again after a reopen adds a
    new statement with the next ``version``; at most one statement per month is ``closed`` at a time.
    ``content_hash`` is the sha256 of the canonical lines (``billing.services.statements.lines_hash``).
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="statements")
    month = models.DateField()
    version = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=10, choices=StatementStatus.choices, default=StatementStatus.CLOSED)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    closed_at = models.DateTimeField()
    reopened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reopened_at = models.DateTimeField(null=True, blank=True)
    reopen_reason = models.TextField(blank=True)
    # {"USD": {"cost": "123.4567890123", "cost_rounded": "123.46", "requests": 10, ...}}: exact strings.
    totals = models.JSONField(default=dict)
    content_hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-month", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "month", "version"], name="statement_unique_version"
            ),
            models.UniqueConstraint(
                fields=["organization", "month"],
                condition=Q(status="closed"),
                name="statement_one_closed_per_month",
            ),
            models.CheckConstraint(
                condition=Q(status__in=StatementStatus.values), name="statement_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization_id} {self.month:%Y-%m} v{self.version} ({self.status})"


class StatementLine(models.Model):
    """Frozen spend of one (project, model, provider account, currency) in a closed month.

    Names are copied at close time so a later rename does not change what was filed.
    """

    statement = models.ForeignKey(MonthStatement, on_delete=models.CASCADE, related_name="lines")
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    project_name = models.CharField(max_length=120, blank=True)
    provider_account = models.ForeignKey(
        ProviderAccount, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    account_name = models.CharField(max_length=120, blank=True)
    model = models.CharField(max_length=200)
    currency = models.CharField(max_length=3)
    cost = MoneyField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    requests = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["currency", "project_name", "model", "account_name"]

    def __str__(self) -> str:
        return f"{self.project_name or 'Unassigned'} / {self.model}: {self.cost} {self.currency}"


class MonthEventKind(models.TextChoices):
    CLOSED = "closed", "Closed"
    REOPENED = "reopened", "Reopened"
    SUMMARY_SENT = "summary_sent", "Summary e-mailed"


class MonthEvent(models.Model):
    """Audit row for a month: who closed or reopened it and why, and when its summary went out.

    The partial unique constraint on ``summary_sent`` makes the monthly e-mail once-only, even when
    the scheduled task is redelivered or runs twice.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="month_events")
    month = models.DateField()
    kind = models.CharField(max_length=16, choices=MonthEventKind.choices)
    statement = models.ForeignKey(
        MonthStatement, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField(blank=True)
    content_hash = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "month"],
                condition=Q(kind="summary_sent"),
                name="month_summary_sent_once",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=MonthEventKind.values), name="month_event_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} {self.kind}"
