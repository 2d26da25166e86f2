from __future__ import annotations

from django.contrib import admin

from .models import IngestRun, ModelPrice, StreamState, UsageDaily, UsageHourly, UsageRecord


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "model",
        "provider_kind",
        "effective_from",
        "input_per_1m",
        "output_per_1m",
        "cache_read_per_1m",
        "cache_write_per_1m",
        "per_request",
    ]
    list_filter = ["provider_kind"]
    search_fields = ["model", "source"]
    date_hierarchy = "effective_from"


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "occurred_at",
        "organization",
        "project",
        "api_key",
        "model",
        "requests",
        "cost",
        "currency",
        "cost_source",
        "status",
        "error_code",
    ]
    list_filter = ["status", "cost_source", "source", "organization"]
    search_fields = ["model", "dedupe_key", "error_code"]
    list_select_related = ["organization", "project", "api_key"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False
    raw_id_fields = ["project", "api_key", "provider_account", "price"]


@admin.register(UsageDaily)
class UsageDailyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "day",
        "organization",
        "project",
        "api_key",
        "model",
        "status",
        "requests",
        "cost",
        "currency",
    ]
    list_filter = ["status", "organization"]
    search_fields = ["model"]
    date_hierarchy = "day"
    show_full_result_count = False
    raw_id_fields = ["project", "api_key", "provider_account"]


@admin.register(UsageHourly)
class UsageHourlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["hour", "organization", "model", "status", "requests", "cost", "currency"]
    list_filter = ["status", "organization"]
    show_full_result_count = False


@admin.register(StreamState)
class StreamStateAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "provider_account",
        "stream",
        "cursor_at",
        "last_success_at",
        "last_error_at",
        "consecutive_failures",
        "lease_until",
    ]
    list_filter = ["stream"]


@admin.register(IngestRun)
class IngestRunAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "started_at",
        "provider_account",
        "stream",
        "status",
        "pages",
        "rows_new",
        "rows_updated",
        "rows_unchanged",
        "error",
    ]
    list_filter = ["status", "stream"]
    date_hierarchy = "started_at"
