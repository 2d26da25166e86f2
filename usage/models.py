"""Usage records, prices, rollups and ingestion bookkeeping.

Token convention, the same for every provider (normalised once, at ingest):
- ``input_tokens``: all input tokens, *including* cache reads and cache writes (OpenAI's convention;
  Anthropic's disjoint classes are added up into it).
- ``cache_read_tokens`` and ``cache_write_tokens``: subsets of ``input_tokens``.
  Uncached input = input - cache_read - cache_write.
- ``output_tokens``: all output tokens, *including* reasoning; ``reasoning_tokens`` is a subset.
"""

from __future__ import annotations

from datetime import date

from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Coalesce

from projects.models import ApiKey, Organization, Project, ProviderAccount, ProviderKind
from projects.money import MoneyField


class CostSource(models.TextChoices):
    PROVIDER = "provider", "Reported by provider"
    PRICE = "price", "Computed from price list"
    UNPRICED = "unpriced", "Unpriced"


class RecordStatus(models.TextChoices):
    SUCCESS = "success", "Success"
    ERROR = "error", "Error"


class RecordSource(models.TextChoices):
    CONNECTOR = "connector", "Provider connector"
    PUSH = "push", "Push API"
    IMPORT = "import", "File import"
    DEMO = "demo", "Demo data"


class ModelPrice(models.Model):
    """USD per 1M tokens for one model from one date on. Never summed, so DecimalField is fine here."""

    provider_kind = models.CharField(max_length=16, choices=ProviderKind.choices)
    model = models.CharField(max_length=200)
    effective_from = models.DateField()
    currency = models.CharField(max_length=3, default="USD")
    input_per_1m = models.DecimalField(max_digits=14, decimal_places=6)
    output_per_1m = models.DecimalField(max_digits=14, decimal_places=6)
    cache_read_per_1m = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    cache_write_per_1m = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    per_request = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    source = models.CharField(max_length=200, blank=True, help_text="Where the figures come from.")

    class Meta:
        ordering = ["provider_kind", "model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider_kind", "model", "effective_from"], name="price_unique_effective"
            ),
            models.CheckConstraint(
                condition=Q(input_per_1m__gte=0) & Q(output_per_1m__gte=0), name="price_nonnegative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider_kind}/{self.model} from {self.effective_from}"

    def applies_on(self, day: date) -> bool:
        return self.effective_from <= day


class UsageRecord(models.Model):
    """One provider request, or one provider time bucket (``requests`` > 1, ``bucket_seconds`` > 0)."""

    # No single-column indexes on organization, project and api_key: the composite (x, occurred_at)
    # indexes below start with them and serve the same lookups (and cascades), and every index
    # less is one B-tree fewer to update per ingested row.
    #
    # Only the organization reference is a database foreign key. PostgreSQL checks each foreign key
    # with one lookup per inserted row at commit, and the four dimension references cost a quarter
    # of the bulk ingest time (docs/performance.md). Ingest takes their ids from the organization's
    # own rows in the same transaction, the app never deletes projects, keys, accounts or prices,
    # and an admin deletion still runs Django's on_delete (SET_NULL, PROTECT) over these rows.
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+", db_index=False)
    project = models.ForeignKey(
        Project,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    api_key = models.ForeignKey(
        ApiKey,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    provider_account = models.ForeignKey(
        ProviderAccount,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    source = models.CharField(max_length=16, choices=RecordSource.choices, default=RecordSource.CONNECTOR)
    occurred_at = models.DateTimeField(help_text="UTC; the bucket start for bucketed records.")
    bucket_seconds = models.PositiveIntegerField(default=0, help_text="0 for a single request.")
    model = models.CharField(max_length=200)
    input_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    requests = models.PositiveIntegerField(default=1)
    cost = MoneyField(default=0)
    currency = models.CharField(max_length=3, default="USD")
    cost_source = models.CharField(max_length=16, choices=CostSource.choices, default=CostSource.UNPRICED)
    price = models.ForeignKey(
        ModelPrice, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    # Gateway quota units charged, kept raw next to the converted cost.
    raw_quota = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=RecordStatus.choices, default=RecordStatus.SUCCESS)
    error_code = models.CharField(max_length=64, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    # sha256 of the natural key, namespaced by account (or push source): re-reading a window upserts.
    dedupe_key = models.CharField(max_length=64)
    ingested_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "dedupe_key"], name="usage_record_unique_natural_key"
            ),
            models.CheckConstraint(
                condition=Q(input_tokens__gte=0)
                & Q(output_tokens__gte=0)
                & Q(cache_read_tokens__gte=0)
                & Q(cache_write_tokens__gte=0)
                & Q(reasoning_tokens__gte=0),
                name="usage_record_tokens_nonnegative",
            ),
            models.CheckConstraint(
                condition=Q(status__in=RecordStatus.values), name="usage_record_status_valid"
            ),
        ]
        indexes = [
            # rollup_refresh_days and the request log: one organization's rows in a time range.
            models.Index(fields=["organization", "occurred_at"], name="usage_record_org_time"),
            # Request log filtered by key.
            models.Index(fields=["api_key", "occurred_at"], name="usage_record_key_time"),
            # Request log of a project page (its page count would otherwise scan the organization's range).
            models.Index(fields=["project", "occurred_at"], name="usage_record_project_time"),
        ]

    def __str__(self) -> str:
        return f"{self.model} @ {self.occurred_at:%Y-%m-%d %H:%M}"

    @property
    def uncached_input_tokens(self) -> int:
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens


class _RollupBase(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    model = models.CharField(max_length=200)
    status = models.CharField(max_length=8, choices=RecordStatus.choices, default=RecordStatus.SUCCESS)
    currency = models.CharField(max_length=3, default="USD")
    input_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    requests = models.BigIntegerField(default=0)
    cost = MoneyField(default=0)
    # Requests whose cost is unknown (no price): shown as "unpriced", never as free.
    unpriced_requests = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class UsageDaily(_RollupBase):
    """Daily rollup per (organization, local day, project, key, account, model, status, currency).

    ``day`` is the organization's local date. Every dashboard panel reads this table.
    """

    day = models.DateField()
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    provider_account = models.ForeignKey(
        ProviderAccount, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    error_code = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [
            # Coalesce: NULL dimensions would otherwise never conflict, letting duplicates in.
            models.UniqueConstraint(
                F("organization"),
                F("day"),
                Coalesce("project", 0),
                Coalesce("api_key", 0),
                Coalesce("provider_account", 0),
                F("model"),
                F("status"),
                F("error_code"),
                F("currency"),
                name="usage_daily_unique_dims",
            ),
        ]
        indexes = [
            # Every dashboard selector: one organization over a day range.
            models.Index(fields=["organization", "day"], name="usage_daily_org_day"),
            # Project drill-down pages.
            models.Index(fields=["project", "day"], name="usage_daily_project_day"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.model} {self.cost} {self.currency}"


class UsageHourly(_RollupBase):
    """Hourly rollup per (organization, UTC hour, model, status, currency) for peaks and bursts."""

    hour = models.DateTimeField(help_text="UTC hour start.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "hour", "model", "status", "currency"],
                name="usage_hourly_unique_dims",
            ),
        ]
        indexes = [
            # peak_hours_heatmap and the spend-anomaly check: one organization over an hour range.
            models.Index(fields=["organization", "hour"], name="usage_hourly_org_hour"),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.model} {self.cost} {self.currency}"


class Stream(models.TextChoices):
    USAGE = "usage", "Usage"
    COSTS = "costs", "Costs"
    BALANCE = "balance", "Balance"
    TOPUPS = "topups", "Top-ups"


class StreamState(models.Model):
    """Cursor, lease and health of one (account, stream): the Zulip-style fill marker.

    The lease is taken with a compare-and-set UPDATE, which works on SQLite and PostgreSQL alike,
    so two workers (beat + "run now" + a redelivered message) never fetch the same stream at once.
    """

    provider_account = models.ForeignKey(ProviderAccount, on_delete=models.CASCADE, related_name="streams")
    stream = models.CharField(max_length=16, choices=Stream.choices)
    cursor_at = models.DateTimeField(null=True, blank=True, help_text="Data complete through this instant.")
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    next_run_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider_account", "stream"], name="stream_state_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.provider_account_id}/{self.stream}"


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCESS = "success", "Success"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class IngestRun(models.Model):
    """One run of one stream: what window it read, what it wrote, and how it ended (error redacted)."""

    provider_account = models.ForeignKey(
        ProviderAccount, null=True, blank=True, on_delete=models.CASCADE, related_name="ingest_runs"
    )
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    stream = models.CharField(max_length=16, choices=Stream.choices)
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    pages = models.PositiveIntegerField(default=0)
    rows_new = models.PositiveIntegerField(default=0)
    rows_updated = models.PositiveIntegerField(default=0)
    rows_unchanged = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    # auth | transient | provider | internal | lease: how the Data sources page and the task treat a failure.
    error_kind = models.CharField(max_length=16, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            # Data sources page: latest runs per account.
            models.Index(fields=["provider_account", "-started_at"], name="ingest_run_account_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.stream} run {self.pk} ({self.status})"
