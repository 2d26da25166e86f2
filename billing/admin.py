from __future__ import annotations

from django.contrib import admin

from .models import BalanceSnapshot, Budget, TopUp


@admin.register(BalanceSnapshot)
class BalanceSnapshotAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["taken_at", "provider_account", "remaining", "currency", "raw_quota", "used", "source"]
    list_filter = ["source", "currency", "provider_account"]
    date_hierarchy = "taken_at"


@admin.register(TopUp)
class TopUpAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "created_at",
        "provider_account",
        "amount",
        "bonus",
        "currency",
        "status",
        "order_ref",
        "payment_method",
        "expires_at",
    ]
    list_filter = ["status", "source", "currency", "provider_account"]
    search_fields = ["order_ref", "note"]
    date_hierarchy = "created_at"


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "__str__",
        "organization",
        "project",
        "monthly_amount",
        "daily_amount",
        "currency",
        "model",
        "thresholds",
    ]
    list_filter = ["organization", "currency"]
    search_fields = ["name", "project__name", "model"]
