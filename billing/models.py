"""Balances, top-ups and budgets."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

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


class Budget(models.Model):
    """A monthly (and optionally daily) spending limit for an organization or one of its projects."""

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
